// Range helpers over an NBD client: zero-filling (reading several ranges: readExtents in
// lib/disk/extents.ts).
import type { NbdClient } from './nbd-client';

const ZEROS = Buffer.alloc(4 * 1024 * 1024);

/** Writes zeros over `length` bytes at `offset`, 4 MiB per request. */
export async function zeroFill(nbd: NbdClient, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; done += ZEROS.length) {
    const n = Math.min(ZEROS.length, length - done);
    await nbd.write(offset + done, ZEROS.subarray(0, n));
  }
}
