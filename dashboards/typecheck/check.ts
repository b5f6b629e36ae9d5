// Type-checks dashboards/wsclose.json against Grafana's published dashboard types.
//
// Two layers:
//
// 1. Below, the JSON file itself is imported (resolveJsonModule) and assigned to the dashboard
//    type. TypeScript widens every string in an imported JSON file to `string`, so this layer
//    checks structure (required fields, objects vs arrays vs numbers vs strings, gridPos shape,
//    targets as a list of queries) but not string values.
// 2. gen.mjs writes generated/wsclose.ts, the same JSON as a TypeScript object literal assigned
//    to the same type. There every string keeps its literal type and TypeScript's excess-property
//    check applies, so a misspelt key (`descripton`), an unknown enum value (`mode: "palete"`),
//    or a variable `type` Grafana does not know is an error too.
//
// Both layers use `Dashboard`, `Panel`, `RowPanel`, `FieldConfigSource` and `DataQuery` from
// @grafana/schema and the per-panel option types Grafana publishes for the timeseries, heatmap
// and stat panels. The Prometheus query fields are not published in @grafana/schema; they are
// modelled here after Grafana's Prometheus data source (`PrometheusQuery`).
//
// dashboard.ts, the source wsclose.json is generated from, is typed with the same types.

import type { DataQuery, Dashboard, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as Heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

import dashboardJson from '../wsclose.json';

/**
 * The serialised (JSON) form of a type: Grafana's string enums (`ThresholdsMode.Absolute`)
 * are written as their values (`"absolute"`) in dashboard JSON.
 */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** What TypeScript infers for an imported JSON file: every string is just `string`. */
export type Widen<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean | null | undefined
      ? T
      : T extends ReadonlyArray<infer U>
        ? Array<Widen<U>>
        : T extends object
          ? { [K in keyof T]: Widen<T[K]> }
          : T;

/** A Prometheus panel query (fields of Grafana's Prometheus data source query model). */
export interface PrometheusQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  editorMode?: 'code' | 'builder';
  range?: boolean;
  instant?: boolean;
  exemplar?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
}

type QueryPanel = Omit<Panel, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
  targets: PrometheusQuery[];
};

export type TimeSeriesPanel = QueryPanel & {
  type: 'timeseries';
  options: TimeSeries.Options;
  fieldConfig: FieldConfigSource<TimeSeries.FieldConfig>;
};

export type HeatmapPanel = QueryPanel & {
  type: 'heatmap';
  options: Heatmap.Options;
  fieldConfig: FieldConfigSource<Heatmap.FieldConfig>;
};

export type StatPanel = QueryPanel & {
  type: 'stat';
  options: Stat.Options;
  fieldConfig: FieldConfigSource;
};

// The panel types the dashboard may use. A panel of another type is an error: add its options
// type from @grafana/schema here when the dashboard starts using one.
export type DashboardPanel = TimeSeriesPanel | HeatmapPanel | StatPanel | RowPanel;

/** Entries Grafana's "Export for sharing externally" adds around the dashboard model. */
export interface ImportInput {
  name: string;
  label: string;
  description: string;
  type: 'datasource' | 'constant';
  pluginId: string;
  pluginName: string;
}
export interface ImportRequirement {
  type: 'grafana' | 'datasource' | 'panel';
  id: string;
  name: string;
  version: string;
}

/** The dashboard file as a whole: a Grafana dashboard plus the import metadata. */
export type DashboardFile = Omit<Dashboard, 'panels'> & {
  panels: DashboardPanel[];
  __inputs: ImportInput[];
  __requires: ImportRequirement[];
  __elements: Record<string, never>;
};

export type StrictDashboardFile = Json<DashboardFile>;

// Narrowing the panel list must not step outside Grafana's own Dashboard type.
type AssertAssignable<T extends U, U> = T;
export type PanelsAreGrafanaPanels = AssertAssignable<Json<DashboardPanel>, Json<NonNullable<Dashboard['panels']>[number]>>;
export type FileIsAGrafanaDashboard = AssertAssignable<StrictDashboardFile, Json<Dashboard>>;

// Layer 1: the committed JSON file, as TypeScript reads it.
export const fromJson: Widen<StrictDashboardFile> = dashboardJson;
