// Registers OSR's search attributes that the namespace lacks, before the control worker runs any
// workflow: upserting an attribute the server does not know fails the workflow task, so a dev
// server started before an attribute existed (e.g. OsrHealth) would stall every protectMachine
// until it is restarted. A cluster that refuses (no operator rights) is left to its operator.
import type { NativeConnection } from '@temporalio/worker';
import type { Logger } from '../lib/config/logger';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../shared/search-attributes';

type AddRequest = Parameters<NativeConnection['operatorService']['addSearchAttributes']>[0];

/** temporal.api.enums.v1.IndexedValueType, by the names SEARCH_ATTRIBUTE_DEFINITIONS uses. */
const INDEXED_VALUE_TYPE: Record<string, number> = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
};

export async function ensureSearchAttributes(
  connection: NativeConnection,
  namespace: string,
  log: Pick<Logger, 'info' | 'warn'>,
): Promise<void> {
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    const known = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = Object.entries(SEARCH_ATTRIBUTE_DEFINITIONS).filter(([name]) => !known.has(name));
    if (!missing.length) return;
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(
        missing.map(([name, type]) => [name, INDEXED_VALUE_TYPE[type] ?? INDEXED_VALUE_TYPE.Keyword]),
      ) as NonNullable<AddRequest['searchAttributes']>,
    });
    log.info({ added: missing.map(([name]) => name) }, 'registered missing OSR search attributes');
  } catch (err) {
    log.warn(
      { error: (err as Error).message },
      `could not check or register OSR's search attributes (${Object.keys(SEARCH_ATTRIBUTE_DEFINITIONS).join(', ')}): register them on the cluster (temporal operator search-attribute create), or workflows that set one will stall`,
    );
  }
}
