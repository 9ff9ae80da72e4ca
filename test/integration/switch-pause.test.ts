// A VM with several disks is paused for the instant its devices move onto the fleecing filters
// (lib/qemu/switch-pause.ts). A process server that dies inside that instant must not leave the
// machine paused for good: the next session of any process server resumes it. The test holds the
// device switch at a QMP gate (so the process server is inside the pause, for certain), then cuts
// its QMP connection, which is what QEMU sees of a process killed there.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { qemuSource } from '../../lib/qemu/qemu-source';
import type { ProtectedMachine } from '../../shared/replication-types';
import { startQmpGate, type QmpGate } from '../helpers/qmp-gate';
import { startTestVm, type TestVm } from '../helpers/test-vm';

const MiB = 1024 * 1024;
let vm: TestVm;
let gate: QmpGate | undefined;

before(async () => {
  vm = await startTestVm({ disks: [4 * MiB, 4 * MiB] });
});

after(async () => {
  await gate?.close();
  await vm?.stop();
});

const machineOn = (qmpSocket: string) =>
  ({ name: 'switchvm', source: { type: 'qemu', qmpSocket } }) as ProtectedMachine;

test('a VM left paused by a process server that died mid-switch is resumed by the next session', async () => {
  const workDir = path.join(vm.dir, 'work');
  gate = await startQmpGate(vm.qmpSocket, path.join(vm.dir, 'gate.sock'));
  const dying = await qemuSource.connect(machineOn(gate.path), { workDir });
  for (const d of ['disk0', 'disk1']) await dying.enableTracking(d);

  let reachedSwitch!: () => void;
  const atSwitch = new Promise<void>((resolve) => (reachedSwitch = resolve));
  gate.hold(
    (execute) => execute === 'qom-set',
    () => {
      reachedSwitch();
      return new Promise<void>(() => undefined); // the process server never gets further
    },
  );
  const freezing = dying.freeze(['disk0', 'disk1'], 'p1').then(
    () => null,
    (err: Error) => err,
  );
  await atSwitch;
  assert.equal(await vm.status(), 'paused', 'OSR pauses a multi-disk VM for the switch');

  // The process server dies: its QMP connection goes with it, the VM stays as it was left.
  await gate.close();
  gate = undefined;
  assert.ok(await freezing, 'the interrupted freeze failed');
  assert.equal(await vm.status(), 'paused', 'the state a process server killed mid-switch leaves');

  // Any process server's next session on the machine (a retried activity) resumes it first.
  const next = await qemuSource.connect(machineOn(vm.qmpSocket), { workDir });
  try {
    assert.deepEqual(await next.listFrozen(), ['p1']);
    assert.equal(await vm.status(), 'running');
    // The guest's writes are acknowledged again.
    await vm.writeRecord(0, 7);
    assert.equal(await vm.readRecord(0, 7), 7);

    // The half-done point is released and the next one is cut, paused and resumed as usual.
    await next.release('p1', { success: false });
    await next.freeze(['disk0', 'disk1'], 'p2');
    assert.equal(await vm.status(), 'running');
    await next.release('p2', { success: true });
    assert.deepEqual(await next.listFrozen(), []);
    assert.equal(await vm.status(), 'running');
    assert.deepEqual(
      fs.readdirSync(workDir).filter((f) => f.includes('paused')),
      [],
      'no pause mark is left once the switches are done',
    );
  } finally {
    await next.close();
  }
});

test('a VM its operator paused stays paused: only OSR’s own pause is undone', async () => {
  const workDir = path.join(vm.dir, 'work');
  await vm.pause();
  const session = await qemuSource.connect(machineOn(vm.qmpSocket), { workDir });
  try {
    assert.deepEqual(await session.listFrozen(), []);
    assert.equal(await vm.status(), 'paused');
  } finally {
    await session.close();
    await vm.resume();
  }
});
