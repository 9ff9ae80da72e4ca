// The quickstart's demo shows the whole promise: `osr demo start` configures a boot check, so a
// drill of the demo machine brings its disk up and its application replays its record journal
// before the probe says up; a disk without a clean journal never passes.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import type { ControlContext } from '../../operations/context';
import { waitForStatus } from '../helpers/protection';
import { startTestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { startTestbed, type Testbed } from '../helpers/testbed';

const run = promisify(execFile);
const cli = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const demoApp = path.resolve(__dirname, '..', '..', 'stack', 'demo', 'demo-app.js');
let bed: Testbed;
let stack: TestStack;
let ctx: ControlContext;

async function osr(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [cli, ...args], { env: stack.env, timeout: 300_000 });
  return stdout;
}

before(async () => {
  bed = await startTestbed();
  ({ stack, ctx } = bed);
});

after(async () => {
  // A failed assertion must not leave the drill's local copy (a detached storage daemon) behind.
  if (stack)
    await run(process.execPath, [cli, 'failover', 'cleanup', 'demo-d'], { env: stack.env }).catch(
      () => undefined,
    );
  if (stack) await run(process.execPath, [cli, 'demo', 'stop'], { env: stack.env }).catch(() => undefined);
  await bed?.stop();
});

test('a drill of the demo machine boots it: the journal is replayed and the probe sees it up', async () => {
  await osr(['demo', 'start', '--name', 'demo-d', '--size', '64M', '--rate', '100']);
  await waitForStatus(ctx, 'demo-d', (s) => s.state === 'protected' && s.lastPoint !== undefined, 180_000);
  const drill = (
    JSON.parse(await osr(['failover', 'test', 'demo-d', '--json'])) as { status: RecoveryStatus }
  ).status;
  assert.equal(drill.bootCheck?.ok, true, `boot check: ${JSON.stringify(drill.bootCheck)}`);
  const replayed = /up: journal replayed, (\d+) records/.exec(drill.bootCheck?.output ?? '');
  assert.ok(replayed, `the probe heard the application: ${drill.bootCheck?.output}`);
  assert.ok(Number(replayed[1]) > 0);
  await osr(['failover', 'cleanup', 'demo-d']);
});

test('the demo application never comes up on a disk without a clean journal', async () => {
  const vm = await startTestMachine({ sizes: [8 * 1024 * 1024] });
  try {
    const res = spawnSync(process.execPath, [demoApp, 'boot'], {
      env: { ...process.env, OSR_RECOVERED_DISKS: path.join(vm.dir, 'disk0.qcow2') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(res.status, 1, res.stdout);
    assert.match(res.stderr, /no record of the demo workload on the recovered disk/);
  } finally {
    await vm.stop();
  }
});
