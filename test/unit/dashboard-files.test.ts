// The dashboard is served from an allowlist (api/dashboard-files.ts), not from the folder: every
// file in api/dashboard/ must be on it, with the type its extension calls for, and every module a
// script imports must be served, or the page would load without it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { dashboardFiles } from '../../api/dashboard-files';
import { accessOf } from '../../api/access';
import { routes } from '../../api/routes';

const dir = path.resolve(__dirname, '..', '..', '..', 'api', 'dashboard');
const TYPES: Record<string, string> = { '.html': 'text/html', '.css': 'text/css', '.js': 'text/javascript' };

test('the allowlist is exactly the files in api/dashboard/, each with its type and a route', () => {
  assert.deepEqual(dashboardFiles.map((f) => f.file).sort(), fs.readdirSync(dir).sort());
  for (const f of dashboardFiles) {
    assert.ok(f.type.startsWith(TYPES[path.extname(f.file)] as string), `${f.file}: ${f.type}`);
    if (f.file !== 'index.html') assert.equal(f.path, `/dashboard/${f.file}`);
    assert.ok(
      routes.some((r) => r.method === 'GET' && r.path === f.path) && accessOf('GET', f.path) === 'public',
      `${f.path} is served`,
    );
  }
});

test('every module a dashboard script imports is served', () => {
  const served = new Set(dashboardFiles.map((f) => f.file));
  for (const f of dashboardFiles.filter((x) => x.file.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(dir, f.file), 'utf8');
    for (const [, spec] of text.matchAll(/^import [^;]* from '([^']*)';$/gm)) {
      assert.match(spec as string, /^\.\/[\w-]+\.js$/, `${f.file} imports ${spec} from beside it`);
      assert.ok(served.has((spec as string).slice(2)), `${f.file} imports ${spec}, which is served`);
    }
  }
});
