// The source of dashboards/wsclose.json. Edit this file, then regenerate the JSON:
//
//   node dashboards/typecheck/generate.mjs
//
// (after `npm ci` in dashboards/typecheck) and run scripts/check-dashboards.sh, which fails when
// the committed JSON is not what this file generates.
//
// Every value is typed with the dashboard types of check.ts (Grafana's @grafana/schema), so tsc
// checks this file as strictly as the JSON: unknown keys, misspelt enum values and wrong shapes
// are errors. Objects are written with their keys in the order Grafana exports them, which keeps
// the generated JSON byte for byte what Grafana would write.
//
// This module must have no runtime imports (type imports only): generate.mjs strips the types
// and evaluates it on its own.

import type { DataSourceRef, RowPanel, VariableModel } from '@grafana/schema';
import type {
  DashboardPanel,
  HeatmapPanel,
  Json,
  PrometheusQuery,
  StrictDashboardFile,
  TimeSeriesPanel,
} from './check';

// --- queries -------------------------------------------------------------------------------

/** The Prometheus data source picked in the dashboard's "Data source" drop-down. */
const datasource = (): Json<DataSourceRef> => ({ type: 'prometheus', uid: '${datasource}' });

/** The drop-down variables, each filtering the next one's values and every panel query. */
const JOB = 'job=~"$job"';
const INSTANCE = 'instance=~"$instance"';
const ROLE = 'role=~"$role"';
/**
 * The static label `endpoint` a service may set on its wsclose configuration
 * (`Config::with_label("endpoint", "/chat")`). Where no series carries it the variable lists
 * nothing and stays at All (`.*`), which also matches series without the label.
 */
const ENDPOINT = 'endpoint=~"$endpoint"';

/** `metric{matchers}`, or the bare metric name when there are no matchers. */
const selector = (metric: string, matchers: string[]): string =>
  matchers.length === 0 ? metric : `${metric}{${matchers.join(', ')}}`;

/** `metric` restricted to the selected jobs, instances, roles and endpoints, plus `extra` matchers. */
const series = (metric: string, ...extra: string[]): string =>
  selector(metric, [JOB, INSTANCE, ROLE, ENDPOINT, ...extra]);

/** `fn(series[$__rate_interval])`: a per-second rate (or increase) over Grafana's rate interval. */
const overInterval = (fn: 'rate' | 'increase', metric: string, ...extra: string[]): string =>
  `${fn}(${series(metric, ...extra)}[$__rate_interval])`;

/** `sum by (labels) (rate(series))`: summed over every selected instance. */
const sumRate = (by: string, metric: string, ...extra: string[]): string =>
  `sum by (${by}) (${overInterval('rate', metric, ...extra)})`;

// No panel shows NaN. A panel with nothing to show for an idle selection (no ends, no
// handshakes in the window, or an outcome that did not occur) draws no line: PromQL gives NaN
// for 0/0, and histogram_quantile gives NaN when every bucket's rate is 0. So:
//   - every ratio divides by `(denominator > 0)` (`ratioOf`): where the denominator is 0 the
//     division has no right-hand sample and no result;
//   - every quantile keeps only the label sets whose `_count` rate is above 0 (`quantile`).
// A rate, a count or an increase is 0 when idle, which is a value worth drawing. lint.mjs
// rejects a ratio or a quantile without its guard, and scripts/check-dashboards.sh evaluates
// every query with promtool on an idle instance and on one with a single active outcome
// (`lint.mjs --idle-test`), expecting no NaN.

/** `numerator / denominator`, only where the denominator is above 0 (no NaN for 0/0). */
const ratioOf = (numerator: string[], denominator: string): string[] => [...numerator, '/', `(${denominator} > 0)`];

/**
 * The q-quantile of a histogram over every selected instance and role, one line per label set of
 * `by`, only where the histogram had observations in the window (no NaN for an idle one).
 */
const quantile = (q: number, histogram: string, by: string[] = []): string =>
  [
    `histogram_quantile(${q}, ${sumRate([...by, 'le'].join(', '), `${histogram}_bucket`)})`,
    `and on (${by.join(', ')})`,
    `(${sumRate(by.join(', '), `${histogram}_count`)} > 0)`,
  ].join('\n');

interface Query {
  expr: string;
  legendFormat: string;
  format?: 'heatmap';
}

/** A panel's queries, with refIds A, B, C, ... in order. */
const targets = (queries: Query[]): Json<PrometheusQuery>[] =>
  queries.map(({ expr, legendFormat, format }, i) => ({
    datasource: datasource(),
    editorMode: 'code',
    expr,
    legendFormat,
    range: true,
    refId: String.fromCharCode('A'.charCodeAt(0) + i),
    ...(format === undefined ? {} : { format }),
  }));

/** p50, p90 and p99 of a histogram, one line each. */
const quantiles = (histogram: string): Query[] =>
  [0.5, 0.9, 0.99].map((q) => ({ expr: quantile(q, histogram), legendFormat: `p${Math.round(q * 100)}` }));

// --- panels --------------------------------------------------------------------------------

/** Where a panel goes: filled in by `layout` below. */
interface Slot {
  id: number;
  gridPos: { h: number; w: number; x: number; y: number };
}
type PanelBuilder = (slot: Slot) => Json<DashboardPanel>;

interface TimeSeriesSpec {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** Stacked areas (the parts of a whole) instead of lines. */
  stacked?: boolean;
  /** Draws the area from this value up in red: the threshold of the matching alert. */
  redFrom?: number;
  max?: number;
  decimals?: number;
}

/** The time series panel every graph of the dashboard uses; only `spec` varies. */
const timeseries =
  (spec: TimeSeriesSpec): PanelBuilder =>
  ({ id, gridPos }): Json<TimeSeriesPanel> => ({
    datasource: datasource(),
    description: spec.description,
    fieldConfig: {
      defaults: {
        color: { mode: 'palette-classic' },
        custom: {
          axisBorderShow: false,
          axisCenteredZero: false,
          axisColorMode: 'text',
          axisLabel: '',
          axisPlacement: 'auto',
          barAlignment: 0,
          drawStyle: 'line',
          fillOpacity: spec.stacked ? 60 : 10,
          gradientMode: 'none',
          hideFrom: { legend: false, tooltip: false, viz: false },
          insertNulls: false,
          lineInterpolation: 'linear',
          lineWidth: 1,
          pointSize: 4,
          scaleDistribution: { type: 'linear' },
          showPoints: 'never',
          spanNulls: false,
          stacking: { group: 'A', mode: spec.stacked ? 'normal' : 'none' },
          thresholdsStyle: { mode: spec.redFrom === undefined ? 'off' : 'line+area' },
        },
        mappings: [],
        min: 0,
        thresholds: {
          mode: 'absolute',
          steps: [
            { color: 'green', value: null },
            ...(spec.redFrom === undefined ? [] : [{ color: 'red', value: spec.redFrom }]),
          ],
        },
        unit: spec.unit,
        ...(spec.max === undefined ? {} : { max: spec.max }),
        ...(spec.decimals === undefined ? {} : { decimals: spec.decimals }),
      },
      overrides: [],
    },
    gridPos,
    id,
    options: {
      legend: { calcs: ['mean', 'max', 'lastNotNull'], displayMode: 'table', placement: 'bottom', showLegend: true },
      tooltip: { hideZeros: false, mode: 'multi', sort: 'desc' },
    },
    targets: targets(spec.queries),
    title: spec.title,
    type: 'timeseries',
  });

/** A ratio (0 to 1) with one decimal, red from the matching alert's threshold up. */
const ratio = (spec: Omit<TimeSeriesSpec, 'unit' | 'decimals'>): PanelBuilder =>
  timeseries({ ...spec, unit: 'percentunit', decimals: 1 });

/** One line per role: `sum by (role) (rate(metric))`. */
const perRole = (metric: string): Query[] => [{ expr: sumRate('role', metric), legendFormat: '{{role}}' }];

const row = (title: string, { id, gridPos }: Slot): Json<RowPanel> => ({
  collapsed: false,
  gridPos,
  id,
  panels: [],
  title,
  type: 'row',
});

// --- layout --------------------------------------------------------------------------------

const WIDTH = 24;
const PANEL_HEIGHT = 8;

interface Section {
  title: string;
  /** Width of every panel of the section; panels fill a line left to right, then wrap. */
  width: number;
  panels: PanelBuilder[];
}

/** Numbers the panels from 1 and places them: a row header, then the section's panels. */
function layout(sections: Section[]): Json<DashboardPanel>[] {
  const panels: Json<DashboardPanel>[] = [];
  let id = 1;
  let y = 0;
  for (const section of sections) {
    panels.push(row(section.title, { id: id++, gridPos: { h: 1, w: WIDTH, x: 0, y } }));
    y += 1;
    let x = 0;
    for (const build of section.panels) {
      if (x + section.width > WIDTH) {
        x = 0;
        y += PANEL_HEIGHT;
      }
      panels.push(build({ id: id++, gridPos: { h: PANEL_HEIGHT, w: section.width, x, y } }));
      x += section.width;
    }
    y += PANEL_HEIGHT;
  }
  return panels;
}

// --- the panels ----------------------------------------------------------------------------

const overview: Section = {
  title: 'Overview',
  width: 8,
  panels: [
    timeseries({
      title: 'Active connections',
      description:
        'WebSocket connections open right now, summed over every selected instance, one line per role (server = connections this service accepted, client = connections it dialled). A sudden drop to zero on one role usually means a deploy, a crash or a load-balancer change. A line that only ever climbs while traffic is flat points at connections that never end (a leak).',
      unit: 'short',
      queries: [{ expr: `sum by (role) (${series('websocket_connections_active')})`, legendFormat: '{{role}}' }],
    }),
    timeseries({
      title: 'Connections opened and ended per second',
      description:
        'How many connections start and how many end each second, per role. In a steady state the two lines overlap. Ends well above opens means the service is shedding connections (deploy, drain, network trouble); opens well above ends means the active count is growing.',
      unit: 'ops',
      queries: [
        { expr: sumRate('role', 'websocket_connections_opened_total'), legendFormat: 'opened {{role}}' },
        { expr: sumRate('role', 'websocket_closes_total'), legendFormat: 'ended {{role}}' },
      ],
    }),
    ratio({
      title: 'Unexpected-end ratio',
      description:
        'Share of connection ends that were unexpected: outcome protocol_error, io_error or internal_error (label expected="false"). Peers that just vanish (peer_gone) and close timeouts are expected and are not counted here. The red area starts at 5%, the threshold of the WebSocketUnexpectedCloseErrors alert. See docs/runbook.md.',
      redFrom: 0.05,
      queries: [
        {
          // `or ... * 0`: 0 instead of no data when there were ends but none unexpected.
          expr: ratioOf(
            [
              '(',
              `  ${sumRate('role', 'websocket_closes_total', 'expected="false"')}`,
              '  or',
              `  ${sumRate('role', 'websocket_closes_total')} * 0`,
              ')',
            ],
            sumRate('role', 'websocket_closes_total')
          ).join('\n'),
          legendFormat: '{{role}}',
        },
      ],
    }),
  ],
};

const howConnectionsEnd: Section = {
  title: 'How connections end',
  width: 12,
  panels: [
    timeseries({
      title: 'Ends per second by outcome',
      description:
        'Every connection end, stacked by outcome. clean = both Close frames exchanged; peer_gone = the transport dropped without a complete close (client crash, network change, load-balancer idle timeout); timeout = the close deadline passed; protocol_error, io_error, internal_error = unexpected ends. A growing peer_gone band during a deploy means connections are not being drained; any internal_error is a bug.',
      unit: 'ops',
      stacked: true,
      queries: [{ expr: sumRate('outcome', 'websocket_closes_total'), legendFormat: '{{outcome}}' }],
    }),
    timeseries({
      title: 'Ends per second by cause',
      description:
        'Every connection end, stacked by what started it: app = the application called close; shutdown = server-wide drain; keepalive = pings went unanswered; lifetime = maximum connection age reached; peer = the peer sent Close first; transport = the transport ended with no Close frame at all. A jump in transport usually means something between the peers (a proxy or load balancer) cut connections.',
      unit: 'ops',
      stacked: true,
      queries: [{ expr: sumRate('cause', 'websocket_closes_total'), legendFormat: '{{cause}}' }],
    }),
  ],
};

const closeDurationHeatmap =
  ({ id, gridPos }: Slot): Json<HeatmapPanel> => ({
    datasource: datasource(),
    description:
      'How many closes fell into each duration bucket over time (darker = more). Look for a second band near the close deadline: those are peers that never answered our Close frame and were cut off.',
    fieldConfig: {
      defaults: {
        custom: {
          hideFrom: { legend: false, tooltip: false, viz: false },
          scaleDistribution: { type: 'linear' },
        },
      },
      overrides: [],
    },
    gridPos,
    id,
    options: {
      calculate: false,
      cellGap: 1,
      color: {
        exponent: 0.5,
        fill: 'dark-orange',
        mode: 'scheme',
        reverse: false,
        scale: 'exponential',
        scheme: 'Oranges',
        steps: 64,
      },
      exemplars: { color: 'rgba(255,0,255,0.7)' },
      filterValues: { le: 1e-9 },
      legend: { show: true },
      rowsFrame: { layout: 'auto' },
      showValue: 'never',
      tooltip: { mode: 'single', showColorScale: false, yHistogram: true },
      yAxis: { axisPlacement: 'left', reverse: false, unit: 's' },
    },
    targets: targets([
      {
        expr: `sum by (le) (${overInterval('increase', 'websocket_close_duration_seconds_bucket')})`,
        legendFormat: '{{le}}',
        format: 'heatmap',
      },
    ]),
    title: 'Close duration distribution',
    type: 'heatmap',
  });

const latencyAndLifetime: Section = {
  title: 'Close latency and connection lifetime',
  width: 12,
  panels: [
    timeseries({
      title: 'Close duration p50 / p90 / p99',
      description:
        'Time from the first Close frame (sent or received) until the transport is closed, for connections that exchanged at least one Close frame. Healthy closes take a round trip or two (milliseconds). A p99 sitting at the close deadline (5 s by default) means peers are not answering Close and the deadline terminates them.',
      unit: 's',
      queries: quantiles('websocket_close_duration_seconds'),
    }),
    closeDurationHeatmap,
    ratio({
      title: 'Share of closes slower than 1 s',
      description:
        'Fraction of closes that took longer than one second, per role. The red area starts at 20%, the threshold of the WebSocketSlowCloses alert. The le matcher accepts both "1" and "1.0" because Prometheus 3 rewrites bucket labels to float form.',
      redFrom: 0.2,
      max: 1,
      queries: [
        {
          expr: [
            '1 - (',
            ...ratioOf(
              // PromQL string "1(\\.0)?" is the regular expression 1(\.0)?
              [sumRate('role', 'websocket_close_duration_seconds_bucket', String.raw`le=~"1(\\.0)?"`)],
              sumRate('role', 'websocket_close_duration_seconds_count')
            ).map((line) => `  ${line}`),
            ')',
          ].join('\n'),
          legendFormat: '{{role}}',
        },
      ],
    }),
    timeseries({
      title: 'Connection duration p50 / p90 / p99',
      description:
        'How long connections lived, from open until the transport closed, for connections that ended in this window. A collapse of the median (for example from minutes to seconds) means connections are being cut early: idle timeouts on a proxy, crash loops, or clients reconnecting in a loop.',
      unit: 's',
      queries: quantiles('websocket_connection_duration_seconds'),
    }),
  ],
};

/** Close frames in one direction, stacked by close code. */
const closeFrames = (direction: 'sent' | 'received', title: string, description: string): PanelBuilder =>
  timeseries({
    title,
    description,
    unit: 'ops',
    stacked: true,
    queries: [
      {
        expr: sumRate('direction, code', 'websocket_close_frames_total', `direction="${direction}"`),
        legendFormat: '{{code}}',
      },
    ],
  });

const closeFramesSection: Section = {
  title: 'Close frames',
  width: 12,
  panels: [
    closeFrames(
      'sent',
      'Close frames sent, by code',
      'Close frames this service sent, per second, by close code (normal_closure = 1000, going_away = 1001, service_restart = 1012, application = 4000-4999, ...). going_away or service_restart spikes line up with deploys and drains; policy_violation or message_too_big mean we are rejecting peers.'
    ),
    closeFrames(
      'received',
      'Close frames received, by code',
      'Close frames peers sent us, per second, by close code. invalid = the peer sent a code that RFC 6455 forbids (the connection then fails as protocol_error). internal_error (1011) or bad_gateway (1014) from peers means the other side is failing; a jump in going_away often means clients navigating away or a client-side deploy.'
    ),
  ],
};

const misuseAndLoss: Section = {
  title: 'Misuse and loss',
  width: 8,
  panels: [
    timeseries({
      title: 'Redundant close requests',
      description:
        'Close calls on connections that were already closing or closed, per second. Harmless by design (the call is a no-op), but a high rate shows application code closing the same connection from several places, for example both a reader and a writer task.',
      unit: 'ops',
      queries: perRole('websocket_close_redundant_total'),
    }),
    timeseries({
      title: 'Sends after close',
      description:
        'Sends refused because the connection was already closing or closed, per second. A trickle is a normal race with peers leaving. A sustained rate means application code keeps writing to dead connections (for example a broadcast list that is not pruned); see WebSocketSendAfterCloseSurge in the runbook.',
      unit: 'ops',
      queries: perRole('websocket_send_after_close_total'),
    }),
    timeseries({
      title: 'Dropped messages',
      description:
        'Outbound messages the application handed over that were never delivered, per second: the connection ended (peer gone, timeout, error) before they could be flushed. Any non-zero value is data a user did not receive; see WebSocketMessagesDropped in the runbook.',
      unit: 'mps',
      queries: perRole('websocket_messages_dropped_total'),
    }),
  ],
};

const handshakeOutcomes =
  'accepted = the upgrade completed (the connection is open); rejected = the server answered an HTTP status instead of 101 on purpose (the application refused it, or a drain answered 503); failed = a malformed upgrade (no Upgrade header, bad key), a peer that went away mid-handshake, or an I/O or TLS error; timeout = the handshake deadline (10 s by default) passed before the request was complete.';

// Placed last so that the earlier panels keep their ids (links with viewPanel=N stay valid).
const openingHandshakes: Section = {
  title: 'Opening handshakes',
  width: 8,
  panels: [
    timeseries({
      title: 'Handshakes per second by outcome',
      description: `Every opening handshake wsclose ran, per second, stacked by outcome and role. ${handshakeOutcomes} On the server role, accepted equals the opened line of the Overview row.`,
      unit: 'ops',
      stacked: true,
      queries: [{ expr: sumRate('role, outcome', 'websocket_handshakes_total'), legendFormat: '{{outcome}} ({{role}})' }],
    }),
    ratio({
      title: 'Handshake failure ratio',
      description:
        'Share of opening handshakes that ended failed or timeout, per role. Refusals (rejected) are the server answering as it meant to and are not counted. The red area starts at 5%, the threshold of the WebSocketHandshakeFailures alert (server role). A jump right after a deploy usually means a proxy, load balancer or TLS terminator no longer forwards the upgrade; a timeout-only rise means slowloris or a stalled proxy (WebSocketHandshakeTimeoutsSurge). See docs/runbook.md.',
      redFrom: 0.05,
      max: 1,
      queries: [
        {
          // `or ... * 0`: 0 instead of no data when every handshake went through.
          expr: ratioOf(
            [
              '(',
              `  ${sumRate('role', 'websocket_handshakes_total', 'outcome=~"failed|timeout"')}`,
              '  or',
              `  ${sumRate('role', 'websocket_handshakes_total')} * 0`,
              ')',
            ],
            sumRate('role', 'websocket_handshakes_total')
          ).join('\n'),
          legendFormat: '{{role}}',
        },
      ],
    }),
    timeseries({
      title: 'Handshake duration p99 by outcome',
      description:
        'The 99th percentile of the opening handshake duration, from the accepted TCP connection (or the client\'s connect) to the end, per outcome and role. accepted is a round trip or two on a healthy network; timeout sits at the handshake deadline by construction. A rising accepted p99 means slow clients, a slow TLS handshake in front, or an overloaded server.',
      unit: 's',
      queries: [
        {
          expr: quantile(0.99, 'websocket_handshake_duration_seconds', ['role', 'outcome']),
          legendFormat: '{{outcome}} ({{role}})',
        },
      ],
    }),
  ],
};

// --- variables -----------------------------------------------------------------------------

/** A multi-select drop-down of a label's values, filtered by the drop-downs before it. */
const labelVariable = (
  name: string,
  label: string,
  description: string,
  filters: string[]
): Json<VariableModel> => ({
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  datasource: datasource(),
  description,
  hide: 0,
  includeAll: true,
  label,
  multi: true,
  name,
  options: [],
  query: {
    query: `label_values(${selector('websocket_connections_opened_total', filters)}, ${name})`,
    refId: 'PrometheusVariableQueryEditor-VariableQuery',
  },
  refresh: 2,
  regex: '',
  skipUrlSync: false,
  sort: 1,
  type: 'query',
});

// --- the dashboard -------------------------------------------------------------------------

export const dashboard: StrictDashboardFile = {
  __inputs: [
    {
      name: 'DS_PROMETHEUS',
      label: 'Prometheus',
      description: 'Prometheus (or Thanos / Mimir) data source that scrapes the wsclose metrics',
      type: 'datasource',
      pluginId: 'prometheus',
      pluginName: 'Prometheus',
    },
  ],
  __elements: {},
  __requires: [
    { type: 'grafana', id: 'grafana', name: 'Grafana', version: '12.0.0' },
    { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
    { type: 'panel', id: 'heatmap', name: 'Heatmap', version: '' },
    { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
  ],
  annotations: {
    list: [
      {
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      },
    ],
  },
  description:
    'How WebSocket connections handled by the wsclose crate end: volume, outcome and cause, close latency, close codes, misuse (redundant closes, sends after close, dropped messages), and how opening handshakes end. Every panel sums over the selected instances so a replicated service reads as one.',
  editable: true,
  fiscalYearStartMonth: 0,
  graphTooltip: 1,
  id: null,
  links: [
    {
      asDropdown: false,
      icon: 'doc',
      includeVars: false,
      keepTime: false,
      tags: [],
      targetBlank: true,
      title: 'Runbook',
      tooltip: 'What each wsclose alert means and what to do',
      type: 'link',
      url: 'https://github.com/wsclose/wsclose/blob/main/docs/runbook.md',
    },
  ],
  panels: layout([
    overview,
    howConnectionsEnd,
    latencyAndLifetime,
    closeFramesSection,
    misuseAndLoss,
    openingHandshakes,
  ]),
  refresh: '30s',
  schemaVersion: 42,
  tags: ['websocket', 'wsclose'],
  templating: {
    list: [
      {
        current: { selected: false, text: '${DS_PROMETHEUS}', value: '${DS_PROMETHEUS}' },
        description: 'Prometheus data source holding the wsclose metrics',
        hide: 0,
        includeAll: false,
        label: 'Data source',
        multi: false,
        name: 'datasource',
        options: [],
        query: 'prometheus',
        refresh: 1,
        regex: '',
        skipUrlSync: false,
        type: 'datasource',
      },
      labelVariable('job', 'Job', 'Prometheus job (service) exposing wsclose metrics', []),
      labelVariable(
        'instance',
        'Instance',
        'Replicas of the selected jobs; All sums every replica into one service view',
        [JOB]
      ),
      labelVariable(
        'role',
        'Role',
        'server = connections this service accepted; client = connections it opened to others',
        [JOB, INSTANCE]
      ),
      labelVariable(
        'endpoint',
        'Endpoint',
        'The static label endpoint set by the service on its wsclose configuration (Config::with_label); All when the service sets none',
        [JOB, INSTANCE, ROLE]
      ),
    ],
  },
  time: { from: 'now-3h', to: 'now' },
  timepicker: {},
  timezone: 'browser',
  title: 'wsclose — WebSocket closes',
  uid: 'wsclose-overview',
  version: 1,
  weekStart: '',
};
