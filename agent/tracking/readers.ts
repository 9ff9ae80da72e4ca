// Open snapshots of frozen points (osr-<disk>-p<n>), one read-only handle each, kept until the
// point is dropped: a promise per name, so reads in parallel never open one twice.
import fs from 'node:fs';
import { dmInfo } from './dm';
import { TrackingError } from './errors';
import { readFailure } from './point-store';

export class SnapshotReaders {
  private readonly open = new Map<string, Promise<fs.promises.FileHandle>>();

  /** Fills `buf` from `offset` of snapshot `name` (`what`: its name for the operator). */
  async read(buf: Buffer, name: string, offset: number, what: string): Promise<Buffer> {
    let opening = this.open.get(name);
    if (!opening) {
      opening = dmInfo(name).then((info) => {
        if (!info) throw new TrackingError('FrozenPointLostError', `${what} is gone`);
        return fs.promises.open(`/dev/mapper/${name}`, 'r');
      });
      this.open.set(name, opening);
      opening.catch(() => this.open.delete(name));
    }
    const fh = await opening;
    try {
      for (let done = 0; done < buf.length; ) {
        const { bytesRead } = await fh.read(buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) throw new TrackingError('FrozenPointLostError', `${name} ended early`);
        done += bytesRead;
      }
    } catch (err) {
      // An overflowed copy-on-write store is said so (point-store.ts), not as a bare I/O error.
      throw await readFailure(err, name, what);
    }
    return buf;
  }

  async close(name: string): Promise<void> {
    await this.open
      .get(name)
      ?.then((fh) => fh.close())
      .catch(() => undefined);
    this.open.delete(name);
  }
}
