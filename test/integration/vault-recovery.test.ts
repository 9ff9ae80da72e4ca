// The vault lives in the recovery site's storage: when the primary site is lost with every bit of
// local state and with its Temporal server (its workflows and their histories), a new control
// plane started elsewhere, given only the storage address and a new, empty Temporal, lists every
// protected machine and its points from the vault, drills and fails one over, and re-enables the
// protection of a machine that survived, from its vault record. The new workers and the CLI get
// a clean environment: nothing of the old stack's ports or folders is inherited.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import * as machines from '../../operations/machines';
import { azuriteConnectionString } from '../../lib/azure/blob-client';
import {
  spawnManaged,
  stopPid,
  waitForLogLine,
  type RunningProcess,
} from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { startTemporalDevServer } from '../../temporal-dev/dev-server';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { projectRoot } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const run = promisify(execFile);
const cli = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const workersDir = path.resolve(__dirname, '..', '..', 'workers');
const MiB = 1024 * 1024;
let bed: Testbed;
let lost: TestMachine;
let survivor: TestMachine;
let elsewhere: string;
const started: RunningProcess[] = [];

before(async () => {
  bed = await startTestbed();
  lost = await startTestMachine({ sizes: [4 * MiB] });
  survivor = await startTestMachine({ sizes: [4 * MiB] });
  elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-elsewhere-'));
});

after(async () => {
  for (const p of started) await stopPid(p.pid);
  await lost?.stop();
  await survivor?.stop();
  await bed?.stop();
  fs.rmSync(elsewhere, { recursive: true, force: true });
});

test('with the site and its Temporal gone, a new control plane on an empty Temporal lists, drills, fails over and re-enables protection from the vault', async () => {
  const { ctx, stack } = bed;
  for (const [name, vm, seed] of [
    ['vr1', lost, 71],
    ['vr2', survivor, 72],
  ] as const) {
    const disk = await vm.disk();
    await disk.write(0, pseudoRandom(MiB, seed));
    await disk.flush();
    await machines.protect(ctx, {
      name,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'manual',
    });
  }
  for (const name of ['vr1', 'vr2']) await waitForStatus(ctx, name, (s) => s.state === 'protected');
  const point = await machines.takePoint(ctx, 'vr1', { kind: 'crash' });
  const expected = await exportedImage(ctx, await pointById(ctx, 'vr1', point.id));

  // The primary site is gone: vr1, every worker, the Temporal server with every workflow, and
  // every file they kept (state folder, logs, tokens, keys). vr2's machine lives on.
  await lost.stop();
  for (const role of ['process-server', 'control', 'cloud-applier'] as const) await stack.killWorker(role);
  await stack.loseServer('temporal');
  // What survives is what the operator kept off the primary site: the backup of the segment keys
  // (docs/operations.md#segment-keys); without it the applier refuses to start, naming the file.
  fs.cpSync(path.join(stack.stateDir, 'keys'), path.join(elsewhere, 'state', 'keys'), { recursive: true });
  fs.rmSync(stack.stateDir, { recursive: true, force: true });

  // Elsewhere: a new, empty Temporal, an empty state folder and a configuration naming only them
  // and the storage; the processes get a clean environment, not the old stack's.
  const temporalPort = await freePort();
  const temporal = await startTemporalDevServer({
    binary: process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal'),
    port: temporalPort,
    uiPort: 0,
    headless: true,
    namespace: 'default',
    logFile: path.join(elsewhere, 'temporal.log'),
  });
  started.push(temporal);
  const config = path.join(elsewhere, 'osr.config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      temporal: { address: `127.0.0.1:${temporalPort}` },
      storage: { connectionString: azuriteConnectionString(stack.config.storage.azuritePort) },
    }),
  );
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    OSR_CONFIG: config,
    OSR_STATE_DIR: path.join(elsewhere, 'state'),
  };
  for (const role of ['control', 'cloud-applier', 'process-server'] as const) {
    const logFile = path.join(elsewhere, `${role}.log`);
    const worker = spawnManaged({
      name: role,
      command: process.execPath,
      args: [path.join(workersDir, `${role}.js`)],
      logFile,
      env,
    });
    started.push(worker);
    await waitForLogLine(logFile, 'worker polling', worker.exited, 60_000);
  }
  const osr = async (...args: string[]) =>
    (await run(process.execPath, [cli, ...args], { env, timeout: 180_000 })).stdout;

  const listed = JSON.stringify(JSON.parse(await osr('status', '--json')));
  assert.ok(
    listed.includes('"vr1"') && listed.includes('"vr2"'),
    `both machines listed from the vault: ${listed}`,
  );
  const points = JSON.parse(await osr('points', 'vr1', '--json')) as Array<{ id: string }>;
  assert.ok(
    points.some((p) => p.id === point.id),
    'and their points',
  );

  // A drill of the lost machine, then its cleanup.
  const drill = JSON.parse(await osr('failover', 'test', 'vr1', '--point', point.id, '--json')) as {
    ref: { job: string };
    status?: RecoveryStatus;
  };
  assert.equal(drill.status?.state, 'ready', drill.status?.error);
  const drillDisk = drill.status.disks.find((d) => d.diskId === 'disk0');
  assert.ok(drillDisk);
  assert.ok(
    (
      await failoverBlobClient(ctx.blobService, drillDisk.blob).downloadToBuffer(0, drillDisk.sizeBytes)
    ).equals(expected),
    "the drill's disk is the point",
  );
  await osr('failover', 'cleanup', drill.ref.job, '--json');

  const failed = JSON.parse(await osr('failover', 'start', 'vr1', '--point', point.id, '--json')) as {
    status?: RecoveryStatus;
  };
  const status = failed.status;
  assert.equal(status?.state, 'failed-over', status?.error);
  const recovered = status.disks.find((d) => d.diskId === 'disk0');
  assert.ok(recovered);
  const image = await failoverBlobClient(ctx.blobService, recovered.blob).downloadToBuffer(
    0,
    recovered.sizeBytes,
  );
  assert.ok(image.equals(expected), 'the failed-over disk is the point, as the lost site last replicated it');

  // The survivor: protection again, from its vault record alone (no source given).
  const disk = await survivor.disk();
  await disk.write(2 * MiB, pseudoRandom(MiB, 73));
  await disk.flush();
  const reenabled = JSON.parse(await osr('protect', 'vr2', '--json')) as { state: string };
  assert.notEqual(reenabled.state, 'failed');
  const after = JSON.parse(await osr('point', 'vr2', '--json')) as { id: string };
  const vr2Points = JSON.parse(await osr('points', 'vr2', '--json')) as Array<{ id: string }>;
  assert.ok(vr2Points.some((p) => p.id === after.id));
  assert.ok(
    (await exportedImage(ctx, await pointById(ctx, 'vr2', after.id))).equals(await survivor.readAll()),
    "vr2's new point is its disk, with the write made after the site was lost",
  );
});
