// Secrets of storage sign-in kept out of messages: a SAS signature, an account key, a client
// secret. Errors and logs name a SAS by its container URL, never by its query.

const SECRET_PATTERNS: [RegExp, string][] = [
  [/([?&]sig=)[^&\s"'<>]+/gi, '$1[redacted]'],
  [/(AccountKey=)[^;\s"']+/gi, '$1[redacted]'],
  [/(SharedAccessSignature=)[^;\s"']+/gi, '$1[redacted]'],
  [/(client_secret=)[^&\s"']+/gi, '$1[redacted]'],
];

/** The text with every SAS signature, account key and client secret replaced by [redacted]. */
export function redactStorageSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** A SAS URL as messages show it: scheme, host and path, no query. */
export function sasUrlForDisplay(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

/**
 * A blob's URL without its query: what may leave the process (an ARM import's sourceUri, a
 * record), since under storage.auth "sas" a client's URL carries the role's SAS.
 */
export function plainBlobUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}
