// Range helpers over an NBD client: reading several ranges into one buffer, and zero-filling.
import type { NbdClient } from './nbd-client';

const ZEROS = Buffer.alloc(4 * 1024 * 1024);

/** Writes zeros over `length` bytes at `offset`, 4 MiB per request. */
export async function zeroFill(nbd: NbdClient, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; done += ZEROS.length) {
    const n = Math.min(ZEROS.length, length - done);
    await nbd.write(offset + done, ZEROS.subarray(0, n));
  }
}

/** Reads the ranges (pipelined) into one buffer, concatenated in the order given. */
export async function readRanges(nbd: NbdClient, extents: readonly { offset: number; length: number }[]) {
  const data = Buffer.allocUnsafeSlow(extents.reduce((a, e) => a + e.length, 0));
  let at = 0;
  await Promise.all(
    extents.map((e) => {
      const into = at;
      at += e.length;
      return nbd.readInto(data, into, e.offset, e.length);
    }),
  );
  return data;
}
