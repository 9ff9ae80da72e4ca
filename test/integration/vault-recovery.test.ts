// The vault lives in the recovery site's storage: when the primary site is lost with every bit of
// local state, a new control plane started elsewhere, given only the storage and Temporal
// addresses, lists every protected machine and its points and fails it over.
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
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const run = promisify(execFile);
const cli = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const MiB = 1024 * 1024;
let bed: Testbed;
let vm: TestMachine;
let elsewhere: string;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [4 * MiB] });
  elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-elsewhere-'));
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
  fs.rmSync(elsewhere, { recursive: true, force: true });
});

test('with all local state gone, a fresh control plane lists the machine and fails it over', async () => {
  const { ctx, stack } = bed;
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB, 71));
  await disk.flush();
  await machines.protect(ctx, {
    name: 'vr1',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, 'vr1', (s) => s.state === 'protected');
  const point = await machines.takePoint(ctx, 'vr1', { kind: 'crash' });
  const expected = await exportedImage(ctx, await pointById(ctx, 'vr1', point.id));

  // The primary site is gone: its machine, its process server, the control plane and every file
  // they kept (state folder, logs, tokens, keys).
  await vm.stop();
  for (const role of ['process-server', 'control', 'cloud-applier'] as const) await stack.killWorker(role);
  fs.rmSync(stack.stateDir, { recursive: true, force: true });

  // Elsewhere: an empty state folder and a configuration naming only Temporal and the storage.
  const config = path.join(elsewhere, 'osr.config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      temporal: { address: `127.0.0.1:${stack.config.temporal.port}` },
      storage: { connectionString: azuriteConnectionString(stack.config.storage.azuritePort) },
    }),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OSR_CONFIG: config,
    OSR_STATE_DIR: path.join(elsewhere, 'state'),
  };
  for (const key of [
    'OSR_TEMPORAL_PORT',
    'OSR_AZURITE_PORT',
    'OSR_TEMPORAL_ADDRESS',
    'OSR_STORAGE_CONNECTION_STRING',
  ])
    delete env[key];
  await stack.startWorker('control', env);
  await stack.startWorker('cloud-applier', env);
  const osr = async (...args: string[]) =>
    (await run(process.execPath, [cli, ...args], { env, timeout: 180_000 })).stdout;

  const listed = JSON.parse(await osr('status', '--json')) as Array<{ name?: string; machine?: string }>;
  assert.ok(
    JSON.stringify(listed).includes('"vr1"'),
    `the new control plane lists vr1 from the vault: ${JSON.stringify(listed)}`,
  );
  const points = JSON.parse(await osr('points', 'vr1', '--json')) as Array<{ id: string }>;
  assert.ok(
    points.some((p) => p.id === point.id),
    'and its points',
  );

  const started = JSON.parse(await osr('failover', 'start', 'vr1', '--point', point.id, '--json')) as {
    status?: RecoveryStatus;
  };
  const status = started.status;
  assert.equal(status?.state, 'failed-over', status?.error);
  const recovered = status.disks.find((d) => d.diskId === 'disk0');
  assert.ok(recovered);
  const image = await failoverBlobClient(ctx.blobService, recovered.blob).downloadToBuffer(
    0,
    recovered.sizeBytes,
  );
  assert.ok(image.equals(expected), 'the failed-over disk is the point, as the lost site last replicated it');
});
