// The public shapes of the CBT connector (cbt-connector.ts). Its vocabulary is QEMU's: a disk is
// a block `node` with a `size`; the source connector (qemu-source.ts) speaks OSR's diskId/sizeBytes.

export interface CbtConnectorOptions {
  /**
   * Folder on the QEMU host for fleecing overlays, point-in-time manifests and (when this
   * connector starts the NBD server) its socket. It must survive a restart of the caller.
   */
  workDir: string;
  /** Socket of an NBD server already running in the QEMU process (qemu-storage-daemon --nbd-server). */
  nbdSocket?: string;
  /** Timeout for QEMU to drop an export or end a job (default 30 s). */
  settleTimeoutMs?: number;
}

export interface TrackingState {
  /** The recording bitmap. */
  bitmap: string;
  generation: number;
  persistent: boolean;
  granularity: number;
  /** Bitmap held for a frozen point in time, if any. */
  frozenBitmap: string | null;
}

export interface ProtectedDisk {
  node: string;
  format: 'qcow2' | 'raw';
  size: number;
  file: string;
  /** Guest device or BlockBackend name on a qemu-system VM; null under qemu-storage-daemon. */
  device: string | null;
  /** A persistent, consistent, recording OSR bitmap exists: tracking survives a QEMU restart. */
  hasPersistentBitmap: boolean;
  tracking: TrackingState | null;
}

export interface TrackingEnabled {
  node: string;
  bitmap: string;
  generation: number;
  persistent: boolean;
  granularity: number;
  /** A new bitmap was started now: what happened before is unknown, so a full sync is needed. */
  fullSyncRequired: boolean;
  /** Why the caller should warn (volatile tracking on raw disks, a bitmap lost to a crash). */
  warnings: string[];
}

export interface FrozenDisk {
  node: string;
  exportName: string;
  nbdSocket: string;
  /** Bitmap of the changes up to the freeze; exported as `qemu:dirty-bitmap:<bitmap>`. */
  bitmap: string;
  size: number;
  granularity: number;
}

export interface FrozenView {
  pitId: string;
  /** ISO time taken just before the freeze: every write acknowledged before it is in the view. */
  instant: string;
  disks: FrozenDisk[];
}

export interface ReleaseResult {
  /** Something of this point in time existed and was removed. */
  released: boolean;
  /** Disks whose recording bitmap vanished: their next cycle must be a full sync. */
  fullSyncRequired: string[];
}
