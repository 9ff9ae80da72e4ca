// Every ApplicationFailure type OSR raises or reads: activities throw them, workflows retry by them
// (nonRetryableErrorTypes) and branch on them (failureType). One set, so a rename cannot leave a
// reader comparing against a string nobody throws any more. Pure constants: workflow-safe.
import { STORAGE_UNAVAILABLE } from './storage-faults';

export const FAILURE = {
  // --- the source (process server) ---
  /** The source refused a request for a reason a retry will not fix. */
  SourceError: 'SourceError',
  /** The source (QMP, NBD) does not answer. */
  SourceUnreachable: 'SourceUnreachable',
  /** The frozen point in time is gone from the source (restarted meanwhile). */
  PointInTimeLost: 'PointInTimeLost',
  /** The application could not be quiesced for an app-consistent point. */
  QuiesceFailed: 'QuiesceFailed',
  /** A group member's writes cannot be held. */
  NoWriteBarrier: 'NoWriteBarrier',
  /** `osr protect`: the --qmp path is no QMP monitor, as the machine's process server sees it. */
  SourceRefused: 'SourceRefused',
  /** `osr host add` / `osr discover`: the host does not answer as added (details: { problem }). */
  HostRefused: 'HostRefused',
  /** `osr agent upgrade`: the agent refused the bundle (SHA-256, contents) or is not here; nothing replaced. */
  AgentUpgradeRefused: 'AgentUpgradeRefused',
  // --- storage and the cloud applier ---
  /** Storage throttling or time-outs kept a step from finishing (details: StorageUnavailableDetails). */
  StorageUnavailable: STORAGE_UNAVAILABLE,
  /** Segments failed verification in the cache (details: { indices }). */
  SegmentCorrupt: 'SegmentCorrupt',
  /** The cycle's manifest is not in the cache. */
  CycleNotUploaded: 'CycleNotUploaded',
  ManifestInvalid: 'ManifestInvalid',
  DiskShrunk: 'DiskShrunk',
  /** A disk whose replica (a fixed VHD) would not fit in one page blob (8 TiB). */
  DiskTooLarge: 'DiskTooLarge',
  ReplicaMissing: 'ReplicaMissing',
  ReplicaChanged: 'ReplicaChanged',
  PointIdConflict: 'PointIdConflict',
  PointImageMissing: 'PointImageMissing',
  /** The azure target cannot be used as set (configuration, settings, a foreign resource, ARM 4xx): never retried. */
  AzureTargetRefused: 'AzureTargetRefused',
  /** The libvirt target cannot be used as set (no kept definition, a foreign domain or network of the name): never retried. */
  LibvirtTargetRefused: 'LibvirtTargetRefused',
  /** An apply request that cannot be right (a bug, not a fault): never retried. */
  InvalidApplyRequest: 'InvalidApplyRequest',
  // --- workflows and steering ---
  /** A requested point (takePoint) could not be cut. */
  PointFailed: 'PointFailed',
  /** protectMachine refused the final point of a planned failover. */
  FinalPointRefused: 'FinalPointRefused',
  /** reprotect refused the final cycle of a failback. */
  FinalCycleRefused: 'FinalCycleRefused',
  /** The final cycle of a failback failed. */
  FinalCycleFailed: 'FinalCycleFailed',
  ReprotectFailed: 'ReprotectFailed',
  RecoveryFailed: 'RecoveryFailed',
  FailbackFailed: 'FailbackFailed',
  PlanFailed: 'PlanFailed',
  /** A plan's script action exited non-zero or timed out (scripts are run once). */
  PlanScriptFailed: 'PlanScriptFailed',
  GroupPointFailed: 'GroupPointFailed',
  MemberNotProtected: 'MemberNotProtected',
} as const;

export type FailureType = (typeof FAILURE)[keyof typeof FAILURE];
