// Generates the Grafana dashboard JSON from dashboard.ts.
//
// usage: node generate.mjs [output.json]
//          writes the dashboard (default: ../wsclose.json, relative to this file)
//        node generate.mjs --check [dashboard.json]
//          exits 1 unless the file (default: ../wsclose.json) is byte for byte what dashboard.ts
//          generates, and says where the two differ
//
// Needs `npm ci` in this directory first: the types of dashboard.ts are stripped with the
// TypeScript compiler from package.json (ts.transpileModule, no type check; tsc -p . checks the
// types, see scripts/check-dashboards.sh).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
let ts;
try {
  ts = (await import('typescript')).default;
} catch {
  console.error(`generate.mjs: the typescript package is missing: run \`npm ci\` in ${relative(process.cwd(), here) || '.'} first`);
  process.exit(1);
}
const sourcePath = resolve(here, 'dashboard.ts');
const defaultOutput = resolve(here, '../wsclose.json');
const fromCwd = (path) => relative(process.cwd(), path) || path;
const REGENERATE = `node ${fromCwd(resolve(here, 'generate.mjs'))}`;

/** The dashboard as Grafana would export it: two-space JSON with a final newline. */
async function generate() {
  const { outputText, diagnostics } = ts.transpileModule(readFileSync(sourcePath, 'utf8'), {
    fileName: sourcePath,
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  if (diagnostics.length > 0) {
    const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
    throw new Error(ts.formatDiagnostics(diagnostics, host));
  }
  // dashboard.ts has type imports only, so the stripped module stands on its own.
  const url = `data:text/javascript;base64,${Buffer.from(outputText).toString('base64')}`;
  const { dashboard } = await import(url);
  if (dashboard === undefined) throw new Error(`${fromCwd(sourcePath)} does not export \`dashboard\``);
  return `${JSON.stringify(dashboard, null, 2)}\n`;
}

/** The path (`panels[3].targets[0].expr`) of the first value that differs, or null. */
function firstDifference(a, b, path = '') {
  if (isDeepStrictEqual(a, b)) return null;
  const bothArrays = Array.isArray(a) && Array.isArray(b);
  const bothObjects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object';
  if (!bothObjects || Array.isArray(a) !== Array.isArray(b)) return path || '(top level)';
  if (bothArrays && a.length !== b.length) return `${path} (length ${a.length} against ${b.length})`;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const sub = bothArrays ? `${path}[${key}]` : `${path}${path ? '.' : ''}${key}`;
    if (!(key in a) || !(key in b)) return `${sub} (only in ${key in a ? 'the file' : 'the source'})`;
    const found = firstDifference(a[key], b[key], sub);
    if (found) return found;
  }
  return path || '(top level)';
}

/** Compares a dashboard file with the generated text; returns a problem, or null. */
function compare(file, generated) {
  const text = readFileSync(file, 'utf8');
  if (text === generated) return null;
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return `${fromCwd(file)} is not valid JSON (${err.message})`;
  }
  const where = firstDifference(parsed, JSON.parse(generated));
  return where === null
    ? `${fromCwd(file)} has the same content as the generated dashboard but not the same text (key order or formatting)`
    : `${fromCwd(file)} differs from the generated dashboard at ${where}`;
}

const args = process.argv.slice(2);
try {
  const generated = await generate();
  if (args[0] === '--check') {
    const file = resolve(args[1] ?? defaultOutput);
    const problem = compare(file, generated);
    if (problem) {
      console.error(`${problem}.`);
      console.error(`It is generated from ${fromCwd(sourcePath)}: edit that file, not the JSON, and regenerate with`);
      console.error(`  ${REGENERATE}`);
      process.exit(1);
    }
    console.log(`${fromCwd(file)} is what ${fromCwd(sourcePath)} generates`);
  } else {
    const output = resolve(args[0] ?? defaultOutput);
    writeFileSync(output, generated);
    console.log(`wrote ${fromCwd(output)} from ${fromCwd(sourcePath)}`);
  }
} catch (err) {
  console.error(`generate.mjs: ${err.stack ?? err}`);
  process.exit(1);
}
