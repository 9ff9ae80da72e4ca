// A device-mapper stand-in for the agent's holds and stops (unit tests): it records the calls and
// fails a message to a suspended device, which the real dm-era would wait on forever.
import assert from 'node:assert/strict';
import type { HoldDm } from '../../agent/tracking/hold';

export function fakeHoldDm(era: number) {
  const suspended = new Set<string>();
  const calls: string[] = [];
  const dm: HoldDm = {
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
  };
  return { dm, suspended, calls };
}
