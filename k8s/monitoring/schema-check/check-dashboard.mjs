// Type-checks Grafana dashboard JSON files against @grafana/schema's types (see dashboard-types.ts).
//
// Usage: node check-dashboard.mjs DASHBOARD.json [...]
// Each file becomes `export const dashboard: CheckedDashboard = <json>;` in a scratch folder here (so
// '@grafana/schema' resolves from node_modules), and `tsc --noEmit --strict` checks it. The JSON starts on the .ts
// file's first line, so tsc's line numbers are the JSON file's.
// Exits 1 when any file is not JSON or does not type-check, with tsc's errors naming the JSON file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
const header = "import type { CheckedDashboard } from '../dashboard-types.js'; export const dashboard: CheckedDashboard = ";

function checkDashboard(dashboardPath) {
  const text = readFileSync(dashboardPath, 'utf8');
  try {
    JSON.parse(text);
  } catch (error) {
    return `${dashboardPath}: not valid JSON: ${error.message}`;
  }
  const scratch = mkdtempSync(join(here, '.generated-'));
  try {
    const generated = join(scratch, 'dashboard.ts');
    writeFileSync(generated, `${header}${text.trimEnd()};\n`);
    const result = spawnSync(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--pretty', 'false', generated],
      { cwd: here, encoding: 'utf8' },
    );
    if (result.error) throw result.error;
    if (result.status === 0) return null;
    const output = `${result.stdout}${result.stderr}`.trim();
    // tsc names the scratch file relative to cwd; name the dashboard instead.
    return output.split(generated.slice(here.length + 1)).join(dashboardPath).split(generated).join(dashboardPath);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error('usage: node check-dashboard.mjs DASHBOARD.json [...]');
  process.exit(2);
}
let failed = false;
for (const path of paths) {
  const problem = checkDashboard(resolve(path));
  if (problem) {
    failed = true;
    console.error(problem);
  } else {
    console.log(`${path}: matches @grafana/schema's dashboard types`);
  }
}
process.exit(failed ? 1 : 0);
