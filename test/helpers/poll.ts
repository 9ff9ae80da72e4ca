// Waiting for a condition in tests: one polling loop for the fixtures' until()/eventually().

/**
 * Calls probe every intervalMs until it returns a value (a thrown error counts as "not yet" and is
 * kept); after timeoutMs throws failure(the last error).
 */
export async function pollFor<T>(
  probe: () => Promise<T | undefined>,
  options: { timeoutMs: number; intervalMs: number; failure: (last: unknown) => Error },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs));
  }
  throw options.failure(last);
}
