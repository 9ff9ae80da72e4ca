// Finding a resource a retried create may already have made: read it by its deterministic name;
// if it is there, its tags must say this recovery made it (a create never adopts anything else).
import { madeBy, type RecoveryRef } from './naming';

/** A resource of that name exists and another job (or nobody in OSR) made it: never touched. */
export class ForeignResourceError extends Error {
  override name = 'ForeignResourceError';
}

export function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number } | undefined)?.statusCode === 404;
}

/** The resource, or undefined when there is none of that name; refuses one that is not ours. */
export async function findOwn<T extends { tags?: Record<string, string> }>(
  what: string,
  name: string,
  resourceGroup: string,
  ref: RecoveryRef,
  get: () => Promise<T>,
): Promise<T | undefined> {
  let found: T;
  try {
    found = await get();
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  if (!madeBy(found.tags, ref))
    throw new ForeignResourceError(
      `a ${what} named ${name} already exists in resource group ${resourceGroup} and was not made by ${ref.kind} ${ref.job} of ${ref.machine} (tags ${JSON.stringify(found.tags ?? {})}); OSR leaves it alone: remove or rename it, or recover into another resource group`,
    );
  return found;
}
