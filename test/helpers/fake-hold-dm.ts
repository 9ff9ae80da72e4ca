// A device-mapper stand-in for the agent's holds and stops (unit tests): it records the calls and
// fails a message to a suspended device, which the real dm-era would wait on forever, and a read
// of the committed era log of a device not suspended, which the live target may be writing.
import assert from 'node:assert/strict';
import type { StopDm } from '../../agent/tracking/stop';

export function fakeHoldDm(era: number) {
  const suspended = new Set<string>();
  const calls: string[] = [];
  /** The era log: [device, era block, the era it was written in]. */
  const written: Array<[string, number, number]> = [];
  const dm: StopDm = {
    async message(device, message) {
      assert.ok(!suspended.has(device), `a message to suspended ${device} would wait forever`);
      calls.push(`${message} ${device}`);
    },
    async currentEra() {
      return era;
    },
    async suspend(device) {
      suspended.add(device);
      calls.push(`suspend ${device}`);
    },
    async resume(device) {
      suspended.delete(device);
      calls.push(`resume ${device}`);
    },
    async suspended(device) {
      return suspended.has(device);
    },
    async committedWrittenSince(device, since) {
      assert.ok(suspended.has(device), `the committed log of live ${device} may be half written`);
      calls.push(`read ${device} since ${since}`);
      return written
        .filter(([d, , e]) => d === device && e >= since)
        .map(([, b]): [number, number] => [b, b + 1]);
    },
  };
  return { dm, suspended, calls, written };
}
