// The kinds of job OSR starts, as set in the OsrJobKind search attribute (shared/search-attributes.ts).

/** Test failover, failover and their cleanup (single machine and plan). */
const FAILOVER_JOB_KINDS = [
  'drill',
  'drill-cleanup',
  'failover',
  'plan-test-failover',
  'plan-cleanup',
  'plan-failover',
] as const;

/** Reprotect and failback (their single-machine and plan-stage jobs). */
const FAILBACK_JOB_KINDS = [
  'reprotect',
  'failback',
  'reenable',
  'plan-reprotect',
  'plan-failback',
  'plan-reenable',
] as const;

/** Every recovery job kind (the jobs that can fail and raise an alert). */
export const RECOVERY_JOB_KINDS = [...FAILOVER_JOB_KINDS, ...FAILBACK_JOB_KINDS] as const;

/** Every job kind OSR starts (protectMachine and the recovery workflows). */
export const JOB_KINDS = [
  'protect',
  ...FAILOVER_JOB_KINDS,
  'group',
  ...FAILBACK_JOB_KINDS,
  // A request waiting for a second person (shared/contracts/approval.ts).
  'approval',
] as const;
