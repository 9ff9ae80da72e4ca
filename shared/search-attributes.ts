// Custom search attributes, registered with the dev server at start (temporal-dev) and set by
// workflows, so operators can filter jobs in the Temporal Web UI: OsrMachine="web-1" etc.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const OSR_MACHINE = defineSearchAttributeKey('OsrMachine', SearchAttributeType.KEYWORD);
export const OSR_STATE = defineSearchAttributeKey('OsrState', SearchAttributeType.KEYWORD);
export const OSR_JOB_KIND = defineSearchAttributeKey('OsrJobKind', SearchAttributeType.KEYWORD);
export const OSR_PLAN = defineSearchAttributeKey('OsrPlan', SearchAttributeType.KEYWORD);
export const OSR_GROUP = defineSearchAttributeKey('OsrGroup', SearchAttributeType.KEYWORD);
export const OSR_RPO_SECONDS = defineSearchAttributeKey('OsrRpoSeconds', SearchAttributeType.INT);
export const OSR_LAST_POINT = defineSearchAttributeKey('OsrLastPoint', SearchAttributeType.DATETIME);
export const OSR_SYNC_PERCENT = defineSearchAttributeKey('OsrSyncPercent', SearchAttributeType.INT);
/** A protected machine's health: healthy, warning or critical (shared/machine-health.ts). */
export const OSR_HEALTH = defineSearchAttributeKey('OsrHealth', SearchAttributeType.KEYWORD);

/** name → CLI type, for `temporal server start-dev --search-attribute name=Type`. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: Record<string, string> = {
  OsrMachine: 'Keyword',
  OsrState: 'Keyword',
  OsrJobKind: 'Keyword',
  OsrPlan: 'Keyword',
  OsrGroup: 'Keyword',
  OsrRpoSeconds: 'Int',
  OsrLastPoint: 'Datetime',
  OsrSyncPercent: 'Int',
  OsrHealth: 'Keyword',
};
