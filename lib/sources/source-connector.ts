// What OSR needs from a source machine, whatever runs it. A connector per kind of source
// (`machine.source.type`) implements this: QEMU over QMP + NBD today (lib/qemu/qemu-source.ts);
// libvirt, or an agent inside the guest, would be new files beside it. The process server's
// activities talk only to this interface and pick the implementation in one place
// (activities/process-server/source.ts).
//
// Vocabulary: a disk is `diskId` with `sizeBytes`, as in the workflows' payloads.
//
// A cycle, from the connector's side:
//   discoverDisks → enableTracking (per disk, once) → [holdWrites] → freeze(all disks at once)
//   → [releaseWrites] → openFrozenDisk(each disk) → changedExtents + reads → release(success?)
//
// Restart-safety contract (every call may be retried after the caller, the worker or the source
// restarted, and must then converge rather than duplicate or forget):
// - enableTracking is idempotent. When tracking had to be started anew (never enabled, or lost
//   with the source's process), it says fullSyncRequired: what happened before is unknown.
// - freeze(diskIds, pitId) is idempotent per pitId: called again with the same id and disks it
//   returns the same view (completing an interrupted freeze); with other disks it refuses. A
//   view that was taken but is lost (the source restarted) is refused, never taken again under
//   the same id: someone may have read the first one.
// - A frozen view survives a restart of the caller: the connector keeps what it needs to find
//   and clean it (listFrozen) in its work folder on the source host.
// - release(pitId, {success}) is safe to repeat and to call for a point never frozen. success:
//   the point's changes are stored, drop them. failure: merge them back into what is being
//   recorded, so the next point carries them too. A change is never lost to a failed cycle.
//   Disks whose tracking was lost meanwhile are named in fullSyncRequired.
// - disableTracking releases every frozen point (changes kept) and removes all the connector
//   left on the source. Safe to repeat.
// - holdWrites/releaseWrites: releaseWrites with what holdWrites returned undoes it; a repeated
//   release is a no-op. stopWrites (planned failover) is undone only by a source with
//   resumeWrites (the agent's), safe to repeat.
// - openFrozenDisk needs no control connection to the source: a transfer holds only the reader.
import type { BlobStorage } from '../azure/blob-client';
import type { Extent } from '../disk/extents';
import type { BarrierMethod } from '../../shared/group-types';
import type { ProtectedMachine, TransferMode } from '../../shared/replication-types';

/** A disk of the machine as discovered. */
export interface SourceDisk {
  diskId: string;
  sizeBytes: number;
  /** Image format where the source knows it (qcow2, raw …). */
  format: string;
  /** Changes are being recorded on it now. */
  tracked: boolean;
}

export interface TrackingStarted {
  diskId: string;
  /** Tracking survives a restart of the source's process (false: a restart forces a resync). */
  persistent: boolean;
  /** Tracking was started now: what happened before is unknown, so a full sync is needed. */
  fullSyncRequired: boolean;
  /** What the operator should be told (volatile tracking, a lost bitmap removed …). */
  warnings: string[];
  /** The source's own words for why changes since the last point are not all known (a crash …). */
  trackingLost?: string;
}

/**
 * One disk of a frozen point in time. Frozen disks are read-only NBD exports (QEMU and libvirt
 * export them natively; an in-guest agent serves its snapshot the same way).
 */
export interface FrozenSourceDisk {
  diskId: string;
  sizeBytes: number;
  exportName: string;
  nbdSocket: string;
  /** The libvirt URI (over SSH) of the remote host nbdSocket is on; absent: this machine. */
  nbdSocketHost?: string;
  /** Name of the change set of this point (the NBD meta context's bitmap); absent: unknown. */
  bitmap?: string;
  /** Frozen by this Mobility agent: read through its connection, not NBD (lib/sources/agent-source.ts). */
  agentId?: string;
}

export interface FrozenSourceView {
  pitId: string;
  /** ISO time taken just before the freeze: every write acknowledged before it is in the view. */
  instant: string;
  disks: FrozenSourceDisk[];
}

export interface ReleaseOutcome {
  /** Something of this point in time existed and was removed. */
  released: boolean;
  /** Disks whose tracking was lost: their next cycle must be a full sync (or resync). */
  fullSyncRequired: string[];
}

export interface StopWritesResult {
  method: 'qmp-stop' | 'quiesce-hook' | 'agent-stop' | 'none';
  note: string;
}

/** Where the replica's checksum list is (a resync compares against it). */
export interface ChecksumSource {
  blobService: BlobStorage;
  /** Name in the cache container of the list (replicaChecksums activity). */
  blob: string;
}

export interface ChangedExtentOptions {
  mode: TransferMode;
  /** resync: the replica's checksum list to compare against. */
  checksums?: ChecksumSource;
  /** Called now and then during long scans (resync reads the whole disk), for heartbeats. */
  onProgress?: (bytesScanned: number) => void;
}

/** A frozen disk opened for reading. */
export interface FrozenDiskReader {
  readonly sizeBytes: number;
  /** What a cycle sends: full (allocated blocks), delta (the change set), resync (checksums differ). */
  changedExtents(options: ChangedExtentOptions): Promise<Extent[]>;
  /** Reads `length` bytes at `offset` of the disk into `target` at `targetOffset`. */
  readInto(target: Buffer, targetOffset: number, offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}

/** Writes could not be held: the source has no means to (e.g. no guest to pause, no agent, no hooks). */
export class NoWriteBarrierError extends Error {
  override readonly name = 'NoWriteBarrierError';
}

/**
 * The writes were let go before releaseWrites (the Mobility agent's own time limit, or it
 * restarted): points frozen meanwhile may hold writes from after the others' cut.
 */
export class WritesNotHeldError extends Error {
  override readonly name = 'WritesNotHeldError';
}

/** The application could not be quiesced: the point can still be cut crash-consistent. */
export class QuiesceError extends Error {
  override readonly name = 'QuiesceError';
}

/** The source does not answer (its process is gone, or the address is wrong). */
export class SourceUnreachableError extends Error {
  override readonly name = 'SourceUnreachableError';
}

/**
 * The source is set up in a way OSR cannot work with (the message says how to fix it): retrying
 * cannot help until the operator acts, so the cycle fails at once with the fix.
 */
export class SourceSetupError extends Error {
  override readonly name = 'SourceSetupError';
}

/** A frozen point is gone from the source (it restarted): retrying cannot bring it back. */
export class FrozenPointLostError extends Error {
  override readonly name: string = 'FrozenPointLostError';
}

/**
 * The source gave the point up to let the machine's writes go on: it could not keep the old data
 * of a rewritten block (the process server's state disk is full, or the copy was too slow).
 */
export class FrozenPointGivenUpError extends FrozenPointLostError {
  override readonly name = 'FrozenPointGivenUpError';
}

/** A session with one source machine; close it when done. */
export interface SourceConnector {
  /** Every disk of the machine (the caller applies the machine's selection). */
  discoverDisks(): Promise<SourceDisk[]>;
  enableTracking(diskId: string): Promise<TrackingStarted>;
  /**
   * One crash-consistent point across all `diskIds` at once; see the contract above. With
   * `quiesce`, the machine's application is quiesced around it (app-consistent); if that fails,
   * nothing is frozen and it throws QuiesceError.
   */
  freeze(diskIds: string[], pitId: string, options?: { quiesce?: boolean }): Promise<FrozenSourceView>;
  /** Points frozen (or left half-done by an interrupted call) and not released. */
  listFrozen(): Promise<string[]>;
  release(pitId: string, options: { success: boolean }): Promise<ReleaseOutcome>;
  disableTracking(): Promise<void>;
  /** How writes can be held for a group cut; throws NoWriteBarrierError saying what is missing. */
  writeBarrier(): Promise<BarrierMethod>;
  /** Holds the machine's writes (no write acknowledged until releaseWrites). */
  holdWrites(): Promise<BarrierMethod>;
  /** Throws WritesNotHeldError when they were let go earlier than this call, by the source itself. */
  releaseWrites(method: BarrierMethod): Promise<void>;
  /** No more writes at all (before a planned failover); says how, or that the operator must. */
  stopWrites(): Promise<StopWritesResult>;
  /** Undoes stopWrites (a failed or cancelled planned failover), where the source can; says what it did. */
  resumeWrites?(): Promise<string>;
  close(): Promise<void>;
}

export interface SourceConnectorOptions {
  /**
   * Folder on the source host for the connector's state, per machine; survives restarts. Needed
   * for tracking and frozen points; a session that only holds or stops writes can do without.
   */
  workDir?: string;
}

/** One kind of source: how to reach a machine, and how to read one of its frozen disks. */
export interface SourceKind {
  readonly type: ProtectedMachine['source']['type'];
  /** Opens a session; rejects when the source does not answer. */
  connect(machine: ProtectedMachine, options: SourceConnectorOptions): Promise<SourceConnector>;
  /** Rejects with SourceUnreachableError or FrozenPointLostError when it cannot be read. */
  openFrozenDisk(disk: FrozenSourceDisk): Promise<FrozenDiskReader>;
}
