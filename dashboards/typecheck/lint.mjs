// Checks what the types cannot: that the dashboard and the rules stick to the metric contract
// (../contract.json, generated from the crate's instrument table; docs/metrics.md describes it)
// and to the dashboard conventions in docs/operations.md.
//
// usage: node lint.mjs [dashboard.json] [rules.yaml]
//        node lint.mjs --idle-test FILE [dashboard.json]
// defaults: ../wsclose.json and ../rules.yaml, relative to this file. Exit status 1 on problems.
// --idle-test writes FILE, a `promtool test rules` file that evaluates every panel query on an
// idle instance and on one where a single outcome has traffic, and expects no NaN (see
// idleTest below); it lints nothing.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultDashboard } from '@grafana/schema';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let idleTestPath;
if (args[0] === '--idle-test') {
  idleTestPath = args.splice(0, 2)[1];
  if (!idleTestPath) {
    console.error('usage: node lint.mjs --idle-test FILE [dashboard.json]');
    process.exit(2);
  }
}
const dashboardPath = resolve(args[0] ?? resolve(here, '../wsclose.json'));
const rulesPath = resolve(args[1] ?? resolve(here, '../rules.yaml'));

const problems = [];
const problem = (where, msg) => problems.push(`${where}: ${msg}`);

// --- the contract (dashboards/contract.json, generated from the crate's instrument table) -----
const contractPath = resolve(here, '../contract.json');
let contract;
try {
  contract = JSON.parse(readFileSync(contractPath, 'utf8'));
} catch (err) {
  console.error(`${contractPath}: ${err.message}`);
  process.exit(1);
}
/**
 * The contract's label entries. One name can carry different values on different instruments
 * (`outcome`: a close's on websocket_closes_total, a handshake's on websocket_handshakes_total);
 * the OpenTelemetry attribute name tells the entries apart.
 */
const labelEntry = (instrument, name) =>
  contract.labels.find((l) => l.name === name && (instrument.otel?.attributes ?? []).includes(l.otel)) ??
  contract.labels.find((l) => l.name === name);
/** Series name -> { labels, values (label -> its bounded values on this series), histogram, buckets }. */
const METRICS = Object.fromEntries(
  contract.instruments.map((i) => [
    i.prometheus,
    {
      labels: i.labels,
      values: Object.fromEntries(i.labels.map((l) => [l, labelEntry(i, l)?.values ?? []])),
      histogram: i.type === 'histogram',
      buckets: i.buckets,
    },
  ])
);
/** Label -> every value it takes on some series (for selectors of recording rules). */
const LABEL_VALUES = {};
for (const l of contract.labels) LABEL_VALUES[l.name] = [...new Set([...(LABEL_VALUES[l.name] ?? []), ...l.values])];
/** The `le` values of a histogram, as Prometheus renders them. */
const leValues = (metric) => [...METRICS[metric].buckets.map((b) => String(b)), '+Inf'];
const SCRAPE_LABELS = ['job', 'instance'];
/**
 * The static labels the dashboard filters by (a service sets them with Config::with_label; any
 * series may carry them). Each must be a name the crate accepts as a static label.
 */
const STATIC_LABELS = ['endpoint'];
{
  const rules = contract.static_labels;
  for (const l of STATIC_LABELS) {
    if (!new RegExp(rules.name_pattern).test(l) || l.startsWith(rules.refused_prefix) || rules.refused_names.includes(l)) {
      console.error(`static label ${l}: the crate refuses this name (contract.json static_labels)`);
      process.exit(1);
    }
  }
}

/** Resolves a series name to [base metric, suffix], or null when it is not in the contract. */
function contractMetric(name) {
  if (METRICS[name] && !METRICS[name].histogram) return [name, ''];
  for (const suffix of ['_bucket', '_count', '_sum']) {
    const base = name.endsWith(suffix) ? name.slice(0, -suffix.length) : null;
    if (base && METRICS[base]?.histogram) return [base, suffix];
  }
  return null;
}

/** Every `websocket_*` selector in a PromQL expression (recording-rule names excluded). */
function selectors(expr) {
  const out = [];
  const re = /(?<![:\w])(websocket_[a-z_]+)(?![:\w])(\{([^}]*)\})?/g;
  for (let m; (m = re.exec(expr)); ) {
    const matchers = [];
    for (const mm of (m[3] ?? '').matchAll(/([a-z_]+)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      matchers.push({ label: mm[1], op: mm[2], value: mm[3] });
    }
    out.push({ name: m[1], index: m.index, matchers, text: m[0] });
  }
  return out;
}

function checkSelectors(where, expr) {
  // Label values anywhere in the expression, recorded series included.
  for (const m of expr.matchAll(/(?<![\w])([a-z_]+)\s*=\s*"([^"]*)"/g)) {
    if (LABEL_VALUES[m[1]] && !LABEL_VALUES[m[1]].includes(m[2])) {
      problem(where, `${m[1]}="${m[2]}" is not a value of ${m[1]} (${LABEL_VALUES[m[1]].join(', ')})`);
    }
  }
  for (const sel of selectors(expr)) {
    const resolved = contractMetric(sel.name);
    if (!resolved) {
      problem(where, `${sel.name} is not a metric of the contract (docs/metrics.md)`);
      continue;
    }
    const [base, suffix] = resolved;
    const allowed = new Set([
      ...METRICS[base].labels,
      ...SCRAPE_LABELS,
      ...STATIC_LABELS,
      ...(suffix === '_bucket' ? ['le'] : []),
    ]);
    for (const { label, op, value } of sel.matchers) {
      if (!allowed.has(label)) problem(where, `${sel.name} has no label ${label}`);
      // A value (or each word of a plain alternation such as "failed|timeout") must be one
      // this series takes.
      const values = METRICS[base].values[label];
      const words = op === '=' ? [value] : op === '=~' && /^[a-z_]+(\|[a-z_]+)*$/.test(value) ? value.split('|') : [];
      for (const w of words) {
        if (values && !values.includes(w)) problem(where, `${sel.name}: ${label}="${w}" is not a value of its ${label} (${values.join(', ')})`);
      }
      if (label === 'le' && suffix === '_bucket' && op === '=' && !leValues(base).includes(value)) {
        problem(where, `le="${value}" is not a bucket of ${base}`);
      }
    }
  }
}

// --- dashboard ----------------------------------------------------------------------------
let dashboard;
try {
  dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8'));
} catch (err) {
  console.error(`${dashboardPath}: ${err.message}`);
  process.exit(1);
}

/**
 * Where a query could show NaN: a division whose right-hand side is not `(... > 0)` (0/0 is
 * NaN), or a histogram_quantile not restricted to the label sets whose `_count` rate is above 0
 * (all buckets at 0 give NaN). The quantile's guard must be
 * `and on (L) (sum by (L) (rate(<same histogram>_count<same selector>[$__rate_interval])) > 0)`,
 * L being the quantile's grouping without `le`. Returns the problems found.
 */
function nanRisks(expr) {
  const out = [];
  // Label values may hold any character; blank them so that only operators are seen.
  const code = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (let i = code.indexOf('/'); i >= 0; i = code.indexOf('/', i + 1)) {
    const rest = code.slice(i + 1).trimStart();
    let depth = 0;
    let end = -1;
    for (let j = 0; j < rest.length && end < 0; j++) {
      if (rest[j] === '(') depth++;
      else if (rest[j] === ')' && --depth === 0) end = j;
    }
    if (!rest.startsWith('(') || end < 0 || !/\s>\s*0$/.test(rest.slice(1, end).trim())) {
      out.push('a division must be by `(... > 0)`, or an idle selection shows NaN (0/0)');
    }
  }
  if (/histogram_quantile/.test(code)) {
    const m = expr.match(
      /^histogram_quantile\([0-9.]+, sum by \(((?:[a-z_]+, )*)le\) \(rate\((websocket_[a-z_]+)_bucket(\{[^}]*\})\[\$__rate_interval\]\)\)\)\s+and on \(([a-z_, ]*)\)\s+\(sum by \(([a-z_, ]*)\) \(rate\((websocket_[a-z_]+)_count(\{[^}]*\})\[\$__rate_interval\]\)\) > 0\)$/
    );
    const by = m?.[1].replace(/, $/, '');
    if (!m || m[4] !== by || m[5] !== by || m[6] !== m[2] || m[7] !== m[3]) {
      out.push(
        'histogram_quantile(q, sum by (L, le) (rate(H_bucket{...}[...]))) must be followed by `and on (L) (sum by (L) (rate(H_count{...}[...])) > 0)` with the same L, H and selector, or an idle selection shows NaN'
      );
    }
  }
  return out;
}

if (idleTestPath !== undefined) {
  writeFileSync(idleTestPath, idleTest());
  console.log(`wrote ${idleTestPath}: every panel query of ${dashboardPath} on idle series`);
  process.exit(0);
}

const expect = (where, cond, msg) => cond || problem(where, msg);
expect('dashboard', dashboard.uid === 'wsclose-overview', 'uid must be "wsclose-overview"');
expect('dashboard', dashboard.title === 'wsclose — WebSocket closes', 'title must be "wsclose — WebSocket closes"');
expect(
  'dashboard',
  dashboard.schemaVersion === defaultDashboard.schemaVersion,
  `schemaVersion ${dashboard.schemaVersion} is not the current one of @grafana/schema (${defaultDashboard.schemaVersion})`
);
expect(
  'dashboard.__inputs',
  (dashboard.__inputs ?? []).some((i) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'),
  'needs a DS_PROMETHEUS datasource input for the prometheus plugin'
);

const vars = Object.fromEntries((dashboard.templating?.list ?? []).map((v) => [v.name, v]));
expect('templating', vars.datasource?.type === 'datasource' && vars.datasource?.query === 'prometheus', 'needs a "datasource" variable of type datasource (prometheus)');
for (const name of ['job', 'instance', 'role', 'endpoint']) {
  const v = vars[name];
  const q = typeof v?.query === 'string' ? v.query : v?.query?.query;
  expect(`templating.${name}`, v?.type === 'query', 'must be a query variable');
  expect(`templating.${name}`, v?.multi === true && v?.includeAll === true, 'must be multi-value with All');
  expect(`templating.${name}`, v?.datasource?.uid === '${datasource}', 'must use the ${datasource} variable');
  expect(
    `templating.${name}`,
    typeof q === 'string' && q.startsWith('label_values(websocket_connections_opened_total') && q.endsWith(`, ${name})`),
    `query must be label_values(websocket_connections_opened_total..., ${name})`
  );
}

const FILTER = '{job=~"$job", instance=~"$instance", role=~"$role", endpoint=~"$endpoint"';
const ids = new Set();
const cells = new Map();
const panels = dashboard.panels ?? [];
for (const [i, panel] of panels.entries()) {
  const where = `panel ${panel.id ?? `#${i}`} "${panel.title ?? ''}"`;
  if (ids.has(panel.id)) problem(where, 'duplicate panel id');
  ids.add(panel.id);
  const g = panel.gridPos;
  const whole = (n) => Number.isInteger(n) && n >= 0;
  if (!g || ![g.x, g.y, g.w, g.h].every(whole) || g.w < 1 || g.h < 1 || g.x + g.w > 24) {
    problem(where, 'gridPos must lie within the 24-column grid');
  } else {
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const key = `${x},${y}`;
        if (cells.has(key)) problem(where, `overlaps ${cells.get(key)}`);
        cells.set(key, where);
      }
    }
  }
  if (panel.type === 'row') continue;

  expect(where, typeof panel.description === 'string' && panel.description.length >= 40, 'needs a description in plain words');
  expect(where, panel.datasource?.uid === '${datasource}', 'datasource must be ${datasource}');
  expect(where, Array.isArray(panel.targets) && panel.targets.length > 0, 'needs at least one query');
  for (const t of panel.targets ?? []) {
    const tw = `${where} query ${t.refId}`;
    const expr = t.expr ?? '';
    expect(tw, t.datasource?.uid === '${datasource}', 'datasource must be ${datasource}');
    checkSelectors(tw, expr);
    const sels = selectors(expr);
    expect(tw, sels.length > 0, 'queries no wsclose metric');
    for (const sel of sels) {
      if (!sel.text.startsWith(`${sel.name}${FILTER}`)) {
        problem(tw, `${sel.name} must be filtered with ${FILTER}}`);
      }
      // Every series is aggregated: sum by (...) (metric) or sum by (...) (rate(metric[...])).
      const before = expr.slice(0, sel.index).replace(/(rate|increase)\($/, '');
      if (!/sum by \([a-z_, ]*\) \($/.test(before)) {
        problem(tw, `${sel.name} must be aggregated with sum by (...) so replicas add up`);
      }
    }
    const windows = [...expr.matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]);
    for (const w of windows) if (w !== '$__rate_interval') problem(tw, `range [${w}] must be [$__rate_interval]`);
    // The grouping may keep other labels (one line per outcome), as long as it keeps le.
    if (/histogram_quantile/.test(expr) && !/histogram_quantile\([0-9.]+, sum by \(([a-z_]+, )*le\) \(rate\(/.test(expr)) {
      problem(tw, 'histogram_quantile must be over sum by (..., le) (rate(..._bucket[$__rate_interval]))');
    }
    for (const risk of nanRisks(expr)) problem(tw, risk);
  }
}

const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
for (const name of Object.keys(METRICS)) {
  const used = exprs.some((e) => selectors(e).some((s) => contractMetric(s.name)?.[0] === name));
  expect('dashboard', used, `no panel shows ${name}`);
}
expect('dashboard', panels.some((p) => p.type === 'heatmap' && (p.targets ?? []).some((t) => /websocket_close_duration_seconds_bucket/.test(t.expr) && t.format === 'heatmap')), 'needs a heatmap of websocket_close_duration_seconds_bucket');

// --- idle test (--idle-test) -----------------------------------------------------------------
/**
 * A promtool test file: the panel queries (variables at All, $__rate_interval 1m) evaluated on
 * the contract's series of one instance, each query as `(Q) != (Q)`, which keeps exactly the
 * NaN samples of Q (NaN is unequal to itself), expecting none. Two cases:
 *   idle:        every series exists (as wsclose creates them) and none moves;
 *   one outcome: only the first outcome of each instrument moves (all observations in the
 *                lowest bucket); the others stay idle, as outcomes without traffic do.
 * Every label but `outcome` takes its first value; `outcome` its first two.
 */
function idleTest() {
  const labelSets = (name) => {
    let sets = [{}];
    for (const l of METRICS[name].labels) {
      const values = METRICS[name].values[l];
      sets = sets.flatMap((s) => (l === 'outcome' ? values.slice(0, 2) : values.slice(0, 1)).map((v) => ({ ...s, [l]: v })));
    }
    return sets;
  };
  const series = (moving) => {
    const out = [];
    for (const name of Object.keys(METRICS)) {
      for (const set of labelSets(name)) {
        const moves = moving && (set.outcome === undefined || set.outcome === METRICS[name].values.outcome[0]);
        const values = moves ? '0+4x40' : '3x40';
        const labels = (extra) =>
          Object.entries({ job: 'idle', instance: 'a:9898', ...set, ...extra })
            .map(([k, v]) => `${k}="${v}"`)
            .join(', ');
        if (!METRICS[name].histogram) {
          out.push({ series: `${name}{${labels({})}}`, values: name === 'websocket_connections_active' ? '1x40' : values });
          continue;
        }
        for (const le of leValues(name)) out.push({ series: `${name}_bucket{${labels({ le })}}`, values });
        out.push({ series: `${name}_count{${labels({})}}`, values });
      }
    }
    return out;
  };
  const vars = { job: '.*', instance: '.*', role: '.*', endpoint: '.*', __rate_interval: '1m' };
  const queries = (dashboard.panels ?? []).flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      where: `panel ${p.id} "${p.title}" query ${t.refId}`,
      expr: (t.expr ?? '').replace(/\$(\w+)/g, (m, v) => vars[v] ?? m),
    }))
  );
  const test = (name, moving) => ({
    name,
    interval: '15s',
    input_series: series(moving),
    promql_expr_test: queries.map(({ expr }) => ({ expr: `(${expr})\n!=\n(${expr})`, eval_time: '10m', exp_samples: [] })),
  });
  const header = [
    '# Generated by dashboards/typecheck/lint.mjs --idle-test from the dashboard: no panel query',
    '# may give NaN. Each expression `(Q) != (Q)` keeps the NaN samples of Q only.',
    '# Queries, in order:',
    ...queries.map((q) => `#   ${q.where}`),
  ];
  // JSON is YAML: promtool reads this file as it is.
  return `${header.join('\n')}\n${JSON.stringify(
    { rule_files: [], evaluation_interval: '15s', tests: [test('idle instance', false), test('one outcome with traffic', true)] },
    null,
    2
  )}\n`;
}

// --- rules (text: every `expr:` block) ------------------------------------------------------
const rulesText = readFileSync(rulesPath, 'utf8');
const lines = rulesText.split('\n');
for (let i = 0; i < lines.length; i++) {
  const m = lines[i].match(/^(\s*)expr:\s*(\|)?\s*(.*)$/);
  if (!m) continue;
  let expr = m[3];
  if (m[2]) {
    expr = '';
    for (let j = i + 1; j < lines.length && (lines[j].trim() === '' || lines[j].search(/\S/) > m[1].length); j++) expr += `${lines[j]}\n`;
  }
  // YAML block scalars keep backslashes; plain scalars used here have no escapes.
  checkSelectors(`rules.yaml line ${i + 1}`, expr);
}
const rulesUsed = new Set(selectors(rulesText).map((s) => contractMetric(s.name)?.[0]).filter(Boolean));
for (const name of ['websocket_closes_total', 'websocket_close_duration_seconds', 'websocket_send_after_close_total', 'websocket_messages_dropped_total']) {
  expect('rules.yaml', rulesUsed.has(name), `no rule uses ${name}`);
}
for (const m of rulesText.matchAll(/^\s*- alert:\s*(\S+)/gm)) {
  expect('rules.yaml', /^WebSocket[A-Z][A-Za-z]+$/.test(m[1]), `alert ${m[1]} must be CamelCase and start with WebSocket`);
}
for (const m of rulesText.matchAll(/^\s*severity:\s*(\S+)/gm)) {
  expect('rules.yaml', ['critical', 'warning'].includes(m[1]), `severity ${m[1]} must be critical or warning`);
}
for (const m of rulesText.matchAll(/^\s*- record:\s*(\S+)/gm)) {
  expect('rules.yaml', /^[a-z_]+:[a-z][a-z0-9_]*:[a-z0-9_]+$/.test(m[1]), `recording rule ${m[1]} must be named level:metric:operations`);
}

if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problem(s)`);
  process.exit(1);
}
const queries = exprs.length;
console.log(`${panels.filter((p) => p.type !== 'row').length} panels, ${queries} queries, ${Object.keys(vars).length} variables: ok`);
