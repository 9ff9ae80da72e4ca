// The few vim25 SOAP calls discovery needs, as small envelopes: POST to <url> (…/sdk), the
// session cookie kept between calls, answers read with fast-xml-parser, faults turned into
// VsphereErrors that say what to fix. vCenter serves no WSDL a generic SOAP client could load,
// and discovery needs five methods; a full vim25 binding would be thousands of types for them.
import https from 'node:https';
import { XMLParser } from 'fast-xml-parser';
import { VsphereError } from './errors';
import { pinnedAgent } from './pinned-tls';

export interface SoapTarget {
  /** https://vcenter.example/sdk */
  url: string;
  /** Pinned SHA-256 fingerprint (AA:BB:…), for a certificate no CA vouches for. */
  thumbprint?: string;
  timeoutMs?: number;
}

/** A parsed XML element: child elements by name, attributes as `@_name`, text as `#text`. */
export type Xml = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Element names of vim25 answers carry no prefix; the envelope's do (soapenv:Body).
  removeNSPrefix: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  // Elements that repeat in vim25 answers: always arrays, even with one entry.
  isArray: (name) =>
    ['objects', 'propSet', 'VirtualDevice', 'GuestNicInfo', 'ipAddress', 'string'].includes(name),
});

export function escapeXml(text: string): string {
  return text.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!,
  );
}

/** A managed object reference as an element: `<name type="Folder">group-d1</name>`. */
export function moRef(element: string, ref: { type: string; value: string }): string {
  return `<${element} type="${escapeXml(ref.type)}">${escapeXml(ref.value)}</${element}>`;
}

/** Reads a managed object reference element back. */
export function readMoRef(x: unknown): { type: string; value: string } | undefined {
  if (!x || typeof x !== 'object') return undefined;
  const e = x as Xml;
  const type = e['@_type'];
  return typeof type === 'string' ? { type, value: text(e) } : undefined;
}

/** An element's text (a leaf parsed as a string, or `#text` of one with attributes). */
export function text(x: unknown): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  if (x && typeof x === 'object' && '#text' in x) return String((x as Xml)['#text']);
  return '';
}

/** The xsi:type of an element, whatever prefix the server gave the XML Schema instance namespace. */
export function xsiType(x: unknown): string | undefined {
  if (!x || typeof x !== 'object') return undefined;
  for (const [k, v] of Object.entries(x as Xml))
    if (k.startsWith('@_') && k.endsWith(':type') && typeof v === 'string') return v.replace(/^[^:]*:/, '');
  return undefined;
}

function childEndingWith(x: unknown, suffix: string): unknown {
  if (!x || typeof x !== 'object') return undefined;
  for (const [k, v] of Object.entries(x as Xml)) if (k === suffix || k.endsWith(`:${suffix}`)) return v;
  return undefined;
}

export class SoapSession {
  #cookie: string | undefined;
  readonly #agent: https.Agent;
  readonly #timeoutMs: number;

  constructor(private readonly target: SoapTarget) {
    this.#timeoutMs = target.timeoutMs ?? 15_000;
    this.#agent = pinnedAgent({ thumbprint: target.thumbprint, timeoutMs: this.#timeoutMs });
  }

  /** Calls `method` with the body's inner XML; resolves with its `returnval` (undefined for void). */
  async call(method: string, inner: string): Promise<unknown> {
    const envelope =
      '<?xml version="1.0" encoding="UTF-8"?>' +
      '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:vim25">' +
      `<soapenv:Body><${method}>${inner}</${method}></soapenv:Body></soapenv:Envelope>`;
    const { status, body, setCookie, contentType } = await this.#post(envelope);
    if (setCookie) this.#cookie = setCookie;
    const soapBody = /xml/i.test(contentType)
      ? childEndingWith(childEndingWith(safeParse(body), 'Envelope'), 'Body')
      : undefined;
    if (soapBody === undefined)
      throw new VsphereError(
        'not-vsphere',
        `${this.target.url} answered HTTP ${status} without a SOAP envelope: it is not the vSphere API. Give the vCenter's SDK address, https://<vcenter>/sdk`,
      );
    const fault = childEndingWith(soapBody, 'Fault');
    if (fault !== undefined) throw faultError(method, fault as Xml);
    const response = (soapBody as Xml)[`${method}Response`];
    if (response === undefined)
      throw new VsphereError(
        'not-vsphere',
        `${this.target.url} answered ${method} without ${method}Response`,
      );
    return typeof response === 'object' ? (response as Xml).returnval : undefined;
  }

  close(): void {
    this.#agent.destroy();
  }

  #post(
    envelope: string,
  ): Promise<{ status: number; body: string; setCookie?: string; contentType: string }> {
    const url = new URL(this.target.url);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        {
          method: 'POST',
          agent: this.#agent,
          timeout: this.#timeoutMs,
          headers: {
            'Content-Type': 'text/xml; charset=utf-8',
            SOAPAction: 'urn:vim25/6.5',
            ...(this.#cookie ? { Cookie: this.#cookie } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const cookie = (res.headers['set-cookie'] ?? [])
              .map((c) => c.split(';')[0])
              .find((c) => c?.startsWith('vmware_soap_session='));
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString('utf8'),
              setCookie: cookie,
              contentType: String(res.headers['content-type'] ?? ''),
            });
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(
          new VsphereError('unreachable', `${url.host} did not answer within ${this.#timeoutMs} ms`),
        ),
      );
      req.on('error', (err) => reject(connectionError(url, err)));
      req.end(envelope);
    });
  }
}

function safeParse(body: string): unknown {
  try {
    return parser.parse(body);
  } catch {
    return undefined;
  }
}

function connectionError(url: URL, err: Error): Error {
  if (err instanceof VsphereError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (
    /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EAI_AGAIN|ECONNRESET/.test(code) ||
    /handshake/.test(err.message)
  )
    return new VsphereError(
      'unreachable',
      `cannot reach ${url.host} (${code || err.message}): check the address and port in the --vcenter URL and that this process server's host can reach it`,
    );
  if (/EPROTO|wrong version number|SSL/i.test(`${code} ${err.message}`))
    return new VsphereError(
      'unreachable',
      `${url.host} does not speak HTTPS (${err.message}): the --vcenter URL must be https://<vcenter>/sdk`,
    );
  return new VsphereError('unreachable', `${url.host}: ${err.message}`);
}

function faultError(method: string, fault: Xml): VsphereError {
  const detail = fault.detail as Xml | undefined;
  const kinds =
    detail && typeof detail === 'object' ? Object.values(detail).map(xsiType).filter(Boolean) : [];
  const kind = kinds[0] ?? Object.keys(detail ?? {})[0]?.replace(/Fault$/, '') ?? 'fault';
  const message = text(fault.faultstring) || kind;
  if (kind === 'InvalidLogin')
    return new VsphereError(
      'credentials',
      `the vCenter refused the user name or password (${message}): check --user and the password in --password-file`,
    );
  if (kind === 'NotAuthenticated')
    return new VsphereError('credentials', `the vCenter session is not authenticated (${message})`);
  return new VsphereError('fault', `${method} failed: ${message} (${kind})`);
}
