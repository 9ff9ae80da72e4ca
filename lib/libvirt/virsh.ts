// libvirt through its own command-line client, `virsh`, with XML in and out: every libvirt API
// OSR needs (checkpoints, pull-mode backups, domain definitions) is there, for any URI libvirt
// speaks (qemu:///system, qemu+ssh://…, qemu+unix:///session?socket=…), with nothing to build.
// XML is parsed and written with fast-xml-parser, never by hand.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

/** virsh failed: `message` is libvirt's own error text (without virsh's "error: " prefixes). */
export class VirshError extends Error {
  override readonly name = 'VirshError';
  constructor(
    readonly args: string[],
    readonly detail: string,
    readonly notFound: boolean,
  ) {
    super(detail);
  }
}

/** virsh was not found on this host (the process server needs Debian's libvirt-clients). */
export class VirshMissingError extends Error {
  override readonly name = 'VirshMissingError';
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** Runs `virsh -c <uri> <args>`; resolves with its stdout. */
export function virsh(uri: string, args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const argv = ['-q', '-c', uri, ...args];
  return new Promise((resolve, reject) => {
    const child = execFile(
      'virsh',
      argv,
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, LC_ALL: 'C' },
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT')
          return reject(
            new VirshMissingError(
              'virsh is not installed on this process server: install libvirt-clients (apt-get install libvirt-clients)',
            ),
          );
        const detail =
          stderr
            .split('\n')
            .map((l) => l.replace(/^error:\s*/, '').trim())
            .filter(Boolean)
            .join('; ') || (err.killed ? `virsh ${args[0]} timed out` : err.message);
        reject(
          new VirshError(
            args,
            detail,
            /not found|no domain|no checkpoint|no such|failed to get domain/i.test(detail),
          ),
        );
      },
    );
    // No one answers virsh's questions: an SSH host key libssh does not know is declined, not asked.
    child.stdin?.end();
  });
}

/** Runs virsh with an XML document written to a temporary file (the argument `@xml` is replaced by its path). */
export async function virshWithXml(
  uri: string,
  args: string[],
  documents: Record<string, string>,
): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-virsh-'));
  try {
    const files: Record<string, string> = {};
    for (const [name, xml] of Object.entries(documents)) {
      files[name] = path.join(dir, `${name}.xml`);
      fs.writeFileSync(files[name], xml);
    }
    return await virsh(
      uri,
      args.map((a) => (a.startsWith('@') ? (files[a.slice(1)] ?? a) : a)),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Elements that may repeat in libvirt's XML: always arrays, so one disk reads like many. */
const REPEATED = new Set(['disk', 'interface', 'serial', 'console', 'channel', 'domaincheckpoint']);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseAttributeValue: false,
  parseTagValue: false,
  isArray: (name) => REPEATED.has(name),
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  format: true,
  suppressEmptyNode: true,
});

/** An XML element as fast-xml-parser gives it: attributes as `@name`, text as `#text`. */
export type XmlNode = { [key: string]: unknown };

export function parseXml(xml: string): XmlNode {
  return parser.parse(xml) as XmlNode;
}

export function buildXml(doc: XmlNode): string {
  return builder.build(doc) as string;
}

/** Text of an element that may carry attributes (`<name>x</name>` or `<memory unit=…>x</memory>`). */
export function textOf(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'object') return textOf((value as XmlNode)['#text']);
  return String(value);
}
