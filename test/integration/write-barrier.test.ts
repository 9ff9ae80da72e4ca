// The write barrier of group cuts against a real qemu-storage-daemon (no guest: its writers are
// outside QEMU): held through the machine's pre/post commands, refused with the fix when it has
// none. (The QMP stop/cont path runs against a real VM in consistency-group.test.ts.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { barrierMethod, holdWrites, releaseWrites } from '../../activities/process-server/write-barrier';
import type { ProtectedMachine } from '../../shared/replication-types';
import { machineOf, startTestMachine, type TestMachine } from '../helpers/qemu-machine';

let vm: TestMachine;
let machine: ProtectedMachine;

before(async () => {
  vm = await startTestMachine({ sizes: [1024 * 1024] });
  machine = machineOf(vm, 'wb1');
});

after(async () => {
  await vm?.stop();
});

test('a storage daemon without hooks cannot join a group, and the error says what to add', async () => {
  await assert.rejects(barrierMethod(machine), (err: Error) => {
    assert.match(err.message, /writes cannot be held/);
    assert.match(err.message, /--guest-agent or with both --pre and --post/);
    return true;
  });
});

test('a storage daemon with pre/post commands is held by pre and released by post, in that order', async () => {
  const log = path.join(vm.dir, 'barrier.log');
  const hooked: ProtectedMachine = {
    ...machine,
    quiesce: { pre: `echo "hold $OSR_MACHINE" >> ${log}`, post: `echo "release $OSR_MACHINE" >> ${log}` },
  };
  assert.equal(await barrierMethod(hooked), 'quiesce-hook');
  const hold = await holdWrites([hooked]);
  assert.deepEqual(hold.held, [{ machine: 'wb1', method: 'quiesce-hook' }]);
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['hold wb1']);
  const released = await releaseWrites([hooked], hold.held);
  assert.ok(released.releasedAt >= hold.heldAt);
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['hold wb1', 'release wb1']);
});

test('when one member cannot be held, the ones already held are released before the error', async () => {
  const log = path.join(vm.dir, 'partial.log');
  const good: ProtectedMachine = {
    ...machine,
    name: 'wb-good',
    quiesce: { pre: `echo hold >> ${log}`, post: `echo release >> ${log}` },
  };
  const bad: ProtectedMachine = { ...machine, name: 'wb-bad', quiesce: { pre: 'exit 3', post: 'true' } };
  await assert.rejects(holdWrites([good, bad]), /pre \(hold\) command of wb-bad failed \(exit 3\)/);
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['hold', 'release']);
});
