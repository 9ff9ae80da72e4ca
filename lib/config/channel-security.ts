// Which configured network channels would carry OSR's traffic in clear: Temporal without TLS or
// an API key, storage over plain HTTP, a plain-HTTP alert webhook, the API without TLS on a
// non-loopback address. Loopback is never a finding (the embedded stack lives there). Workers log
// these at start, `osr doctor` and `osr serve` print them; nothing is refused, so a lab on a
// private network keeps working, but nobody runs it so by accident.
import net from 'node:net';
import type { OsrConfig } from './config';

function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare === '::1') return true;
  return net.isIPv4(bare) && bare.startsWith('127.');
}

function hostOfUrl(url: string): string | undefined {
  try {
    return new URL(url).hostname;
  } catch {
    return undefined;
  }
}

/** The storage endpoints a connection string names, with the scheme each is reached by. */
function storageEndpoints(connectionString: string): string[] {
  const parts = new Map<string, string>();
  for (const part of connectionString.split(';')) {
    const at = part.indexOf('=');
    if (at > 0) parts.set(part.slice(0, at).trim().toLowerCase(), part.slice(at + 1).trim());
  }
  const blob = parts.get('blobendpoint');
  if (blob) return [blob];
  const account = parts.get('accountname');
  if (!account) return [];
  const scheme = (parts.get('defaultendpointsprotocol') ?? 'https').toLowerCase();
  return [`${scheme}://${account}.blob.${parts.get('endpointsuffix') ?? 'core.windows.net'}`];
}

/** One sentence per channel that crosses a network in clear, with the setting that fixes it. */
export function insecureChannels(config: OsrConfig): string[] {
  const found: string[] = [];
  const { address, tls, apiKey } = config.temporal;
  if (address && !tls && !apiKey) {
    const host = address.slice(0, address.lastIndexOf(':'));
    if (!isLoopback(host))
      found.push(
        `Temporal at ${address} is reached without TLS: set temporal.tls (server CA, client certificate for mTLS) or temporal.apiKey`,
      );
  }
  for (const endpoint of config.storage.connectionString
    ? storageEndpoints(config.storage.connectionString)
    : []) {
    const host = hostOfUrl(endpoint);
    if (endpoint.toLowerCase().startsWith('http://') && host && !isLoopback(host))
      found.push(
        `storage at ${host} is reached over plain HTTP: use DefaultEndpointsProtocol=https (and https:// endpoints) in storage.connectionString`,
      );
  }
  // SAS URLs and the Entra ID endpoint: a bearer token or SAS in clear is as good as the key.
  const signInUrls = [
    ...(config.storage.auth === 'entra' && config.storage.accountUrl ? [config.storage.accountUrl] : []),
    ...(config.storage.auth === 'sas'
      ? Object.values(config.storage.sas).flatMap((c) => Object.values(c ?? {}))
      : []),
  ];
  for (const url of signInUrls) {
    const host = hostOfUrl(url);
    if (url.toLowerCase().startsWith('http://') && host && !isLoopback(host))
      found.push(
        `storage at ${host} is reached over plain HTTP with ${config.storage.auth === 'sas' ? 'a SAS' : 'an Entra ID token'}: use https:// in storage.${config.storage.auth === 'sas' ? 'sas' : 'accountUrl'}`,
      );
  }
  const webhook = config.alerts.webhookUrl;
  const webhookHost = webhook ? hostOfUrl(webhook) : undefined;
  if (webhook?.startsWith('http://') && webhookHost && !isLoopback(webhookHost))
    found.push(`the alert webhook ${webhookHost} is plain HTTP: use an https:// alerts.webhookUrl`);
  if (config.api.insecureHttp && !config.api.tls && !isLoopback(config.api.host))
    found.push(
      `osr serve listens on ${config.api.host} without TLS (api.insecureHttp): the bearer token crosses the network in clear unless a proxy terminates TLS`,
    );
  return found;
}
