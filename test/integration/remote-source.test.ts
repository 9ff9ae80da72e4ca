// The control plane on another host than QEMU: `osr protect` (operations, as the CLI and the API
// call them) never looks at the machine's socket itself; a process server of the machine's site
// does (checkSource workflow, probeSource activity). Here the process server runs in the VM's
// folder and is given socket paths relative to it: paths this test process cannot see.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { createManualPolicy } from '../helpers/testbed';

const MiB = 1024 * 1024;
let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;

before(async () => {
  stack = await startTestStack();
  vm = await startTestMachine({ sizes: [8 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(MiB, 5));
  await disk.flush();
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server', {}, { cwd: path.dirname(vm.daemon.qmpSocket) }),
  ]);
  ctx = new ControlContext(stack.config);
  await createManualPolicy(ctx);
});

after(async () => {
  await ctx?.close();
  await vm?.stop();
  await stack?.stop();
});

test('protect works when only the process server can see the QMP socket', async () => {
  const qmp = path.basename(vm.daemon.qmpSocket);
  const nbd = path.basename(vm.daemon.nbdSocket);
  assert.equal(fs.existsSync(qmp), false, `this process cannot see ${qmp}`);
  assert.equal(fs.existsSync(nbd), false, `this process cannot see ${nbd}`);

  // A wrong path is still refused with the fix, as the process server sees it: an NBD socket.
  await assert.rejects(
    machines.protect(ctx, { name: 'rs-wrong', qmpSocket: nbd, policy: 'manual' }),
    /nbd\.sock is an NBD server socket, not a QMP monitor: give it as --nbd, and the QMP monitor socket as --qmp\. Nothing was started/,
  );
  assert.equal(await ctx.vault.machine('rs-wrong'), undefined, 'the refused machine is not registered');

  await machines.protect(ctx, { name: 'rs1', qmpSocket: qmp, nbdSocket: nbd, policy: 'manual' });
  await waitForStatus(ctx, 'rs1', (s) => s.state === 'protected');
  const point = await machines.takePoint(ctx, 'rs1', { kind: 'crash' });
  assert.ok(point.id, 'a point was cut from the socket only the process server sees');
});

test("no process server for the machine's site: protect says so and names the fix", async () => {
  const elsewhere = new ControlContext({ ...stack.config, site: 'nowhere' });
  try {
    await assert.rejects(
      machines.protect(elsewhere, { name: 'rs-nowhere', qmpSocket: vm.daemon.qmpSocket, policy: 'manual' }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'unavailable');
        assert.match(
          err.message,
          /no process server of site nowhere answered within \d+ s \(task queue osr-process-server-nowhere\): start one on the machine's QEMU host/,
        );
        assert.match(err.message, /Nothing was started\.$/);
        return true;
      },
    );
    assert.equal(await ctx.vault.machine('rs-nowhere'), undefined, 'nothing was registered');
  } finally {
    await elsewhere.close();
  }
});
