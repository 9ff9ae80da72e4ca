// `osr stack up|status|down` as an operator runs it: real detached processes, a real Web UI, and
// nothing left running after `down`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { isAlive } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';

const run = promisify(execFile);
const osr = path.resolve(__dirname, '..', '..', '..', 'bin', 'osr.js');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-stack-'));
let env: NodeJS.ProcessEnv;

async function osrCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [osr, ...args], { env, timeout: 180_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

after(async () => {
  await osrCli(['stack', 'down']);
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('stack up starts Temporal, its Web UI, Azurite and the workers; down leaves no process', async () => {
  // The Temporal binary is shared with the project's own state folder: no second build.
  fs.mkdirSync(path.join(stateDir, 'bin'), { recursive: true });
  fs.symlinkSync(
    path.resolve(__dirname, '..', '..', '..', '.osr', 'bin', 'temporal'),
    path.join(stateDir, 'bin', 'temporal'),
  );
  env = {
    ...process.env,
    OSR_CONFIG: path.join(stateDir, 'none.json'),
    OSR_STATE_DIR: stateDir,
    OSR_TEMPORAL_PORT: String(await freePort()),
    OSR_TEMPORAL_UI_PORT: String(await freePort()),
    OSR_AZURITE_PORT: String(await freePort()),
  };
  fs.writeFileSync(env.OSR_CONFIG as string, '{}');

  const up = await osrCli(['stack', 'up', '--json']);
  assert.equal(up.code, 0, up.stderr);
  const status = JSON.parse((await osrCli(['stack', 'status', '--json'])).stdout) as Array<{
    name: string;
    state: string;
    pid?: number;
  }>;
  assert.deepEqual(
    status.map((s) => [s.name, s.state]),
    [
      ['temporal', 'running'],
      ['temporal-ui', 'running'],
      ['azurite', 'running'],
      ['control', 'running'],
      ['process-server', 'running'],
      ['cloud-applier', 'running'],
      ['master-target', 'running'],
    ],
  );
  const ui = await fetch(`http://127.0.0.1:${env.OSR_TEMPORAL_UI_PORT}/`);
  assert.equal(ui.status, 200);
  assert.match(await ui.text(), /<html/i);
  assert.ok(
    fs.existsSync(path.join(stateDir, 'temporal', 'temporal.db')),
    'Temporal persists to SQLite under the state folder',
  );

  const doctor = await osrCli(['doctor', '--json']);
  assert.equal(doctor.code, 0, doctor.stderr);
  assert.equal((JSON.parse(doctor.stdout) as { ok: boolean }).ok, true);

  const pids = status.map((s) => s.pid).filter((p): p is number => p !== undefined);
  const down = await osrCli(['stack', 'down']);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(pids.filter(isAlive), [], 'no process is left after down');
  const after = await osrCli(['stack', 'status']);
  assert.equal(after.code, 3, 'status exits 3 when parts are stopped');
});

test('stack reset asks first, then deletes the embedded state and keeps the binary and the key', async () => {
  const db = path.join(stateDir, 'temporal', 'temporal.db');
  const keyFile = path.join(stateDir, 'keys', 'osr.key');
  assert.ok(fs.existsSync(db) && fs.existsSync(path.join(stateDir, 'azurite')), 'state from the first test');
  // No terminal to ask on: refused, nothing deleted.
  const refused = await osrCli(['stack', 'reset']);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /run it in a terminal to confirm, or pass --yes/);
  assert.ok(fs.existsSync(db), 'nothing deleted without confirmation');
  const keyBefore = fs.existsSync(keyFile) ? fs.readFileSync(keyFile) : undefined;

  const reset = await osrCli(['stack', 'reset', '--yes']);
  assert.equal(reset.code, 0, reset.stderr);
  assert.ok(!fs.existsSync(path.join(stateDir, 'temporal')), 'Temporal history deleted');
  assert.ok(!fs.existsSync(path.join(stateDir, 'azurite')), 'Azurite data deleted');
  assert.ok(fs.existsSync(path.join(stateDir, 'bin', 'temporal')), 'the built binary is kept');
  if (keyBefore) assert.deepEqual(fs.readFileSync(keyFile), keyBefore, 'the encryption key is kept');
  const again = await osrCli(['stack', 'reset', '--yes']);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /nothing to reset/);
});

test('a taken port is reported with the fix, and nothing is started', async () => {
  const blocker = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
  env = { ...env, OSR_TEMPORAL_PORT: String(port) };
  try {
    const res = await osrCli(['stack', 'up']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, new RegExp(`Port ${port} .*taken`));
    assert.match(res.stderr, /OSR_TEMPORAL_PORT/);
  } finally {
    blocker.close();
  }
  const status = JSON.parse((await osrCli(['stack', 'status', '--json'])).stdout) as Array<{ state: string }>;
  assert.ok(
    status.every((s) => s.state === 'stopped'),
    'nothing was started',
  );
});
