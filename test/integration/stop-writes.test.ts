// Stopping a source's writes before a planned failover, against a real qemu-storage-daemon (no
// guest, no QMP `stop`): its quiesce command is run and left in effect, or the result says the
// operator must stop the writers. (QMP `stop` of a real VM is in test-vm.test.ts.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { stopSourceWrites } from '../../activities/process-server/stop-writes';
import type { ProtectedMachine } from '../../shared/replication-types';
import { machineOf, startTestMachine, type TestMachine } from '../helpers/qemu-machine';

let vm: TestMachine;
let machine: ProtectedMachine;

before(async () => {
  vm = await startTestMachine({ sizes: [1024 * 1024] });
  machine = machineOf(vm, 'sw1');
});

after(async () => {
  await vm?.stop();
});

test('a storage daemon with a quiesce command: the command runs, and no thaw follows', async () => {
  const log = path.join(vm.dir, 'hooks.log');
  const result = await stopSourceWrites({
    ...machine,
    quiesce: { pre: `echo "pre $OSR_MACHINE $OSR_POINT_KIND" >> ${log}`, post: `echo post >> ${log}` },
  });
  assert.equal(result.method, 'quiesce-hook');
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['pre sw1 final']);
});

test('a storage daemon without one: the operator is told to stop the writers', async () => {
  const result = await stopSourceWrites(machine);
  assert.equal(result.method, 'none');
  assert.match(result.note, /must have been stopped by the operator/);
});

test('a failing quiesce command fails the step with its output', async () => {
  await assert.rejects(
    stopSourceWrites({ ...machine, quiesce: { pre: 'echo app refuses >&2; exit 1' } }),
    /quiesce command of sw1 failed \(exit 1\): app refuses/,
  );
});
