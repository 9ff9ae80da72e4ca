// A disk failback writes (the master target's target): an original disk served over NBD, or a
// disk inside a machine written through its Mobility agent. The master target's apply, journal,
// rollback and checksums use only this.
import type { ReadsInto } from './extents';

export interface TargetDevice extends ReadsInto {
  readonly size: number;
  write(offset: number, data: Buffer): Promise<void>;
  /** Writes zeros over [offset, offset + length). */
  zero(offset: number, length: number): Promise<void>;
  /** Every write answered before is durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
