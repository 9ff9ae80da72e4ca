// A libvirt domain as OSR sees it: its disks (target dev, image, format, size) and state, read from
// `virsh dumpxml` and `domblkinfo`.
import { parseXml, textOf, virsh, VirshError, type XmlNode } from './virsh';

export interface DomainDisk {
  /** The disk's target dev (vda, sdb …): libvirt's name for it, and OSR's disk id. */
  target: string;
  /** qcow2, raw … (driver type). */
  format: string;
  /** Image file or block device, when the disk has one. */
  source?: string;
  sizeBytes: number;
  /** Persistent bitmaps (libvirt checkpoints) need qcow2. */
  trackable: boolean;
}

export interface DomainInfo {
  name: string;
  uuid: string;
  state: string;
  disks: DomainDisk[];
  /** The domain's definition as libvirt keeps it (`dumpxml --inactive --security-info` is not used: no secrets). */
  xml: string;
}

/** The domain does not exist on that libvirt host. */
export class NoSuchDomainError extends Error {
  override readonly name = 'NoSuchDomainError';
}

/** `dumpxml` of a domain, with a clear error when it does not exist. */
export async function domainXml(
  uri: string,
  domain: string,
  options: { inactive?: boolean } = {},
): Promise<string> {
  try {
    return await virsh(uri, ['dumpxml', ...(options.inactive ? ['--inactive'] : []), '--', domain]);
  } catch (err) {
    if (err instanceof VirshError && err.notFound) {
      throw new NoSuchDomainError(
        `libvirt at ${uri} has no domain ${domain}: check the name with \`virsh -c ${uri} list --all\``,
      );
    }
    throw err;
  }
}

/** The writable file or block disks of a domain definition (no cdroms, floppies or read-only disks). */
export function disksOfXml(xml: string): Array<Omit<DomainDisk, 'sizeBytes'>> {
  const devices = ((parseXml(xml).domain as XmlNode | undefined)?.devices ?? {}) as XmlNode;
  const disks = (devices.disk ?? []) as XmlNode[];
  return disks
    .filter((d) => (d['@device'] ?? 'disk') === 'disk' && d.readonly === undefined)
    .map((d) => {
      const driver = (d.driver ?? {}) as XmlNode;
      const source = (d.source ?? {}) as XmlNode;
      const format = String(driver['@type'] ?? 'raw');
      return {
        target: String((d.target as XmlNode)['@dev']),
        format,
        source: (source['@file'] ?? source['@dev'] ?? source['@name']) as string | undefined,
        trackable: format === 'qcow2',
      };
    });
}

export async function domainInfo(uri: string, domain: string): Promise<DomainInfo> {
  const xml = await domainXml(uri, domain);
  const doc = parseXml(xml).domain as XmlNode;
  const state = (await virsh(uri, ['domstate', '--', domain])).trim();
  const disks: DomainDisk[] = [];
  for (const d of disksOfXml(xml)) disks.push({ ...d, sizeBytes: await capacityOf(uri, domain, d.target) });
  return { name: String(textOf(doc.name)), uuid: String(textOf(doc.uuid)), state, disks, xml };
}

/** A disk's virtual size (domblkinfo's Capacity). */
async function capacityOf(uri: string, domain: string, target: string): Promise<number> {
  const out = await virsh(uri, ['domblkinfo', '--', domain, target]);
  const m = /^Capacity:\s+(\d+)/m.exec(out);
  if (!m) throw new Error(`virsh domblkinfo ${domain} ${target} gave no capacity: ${out.trim()}`);
  return Number(m[1]);
}

/** Names of every domain of the host, defined or running. */
export async function domainNames(uri: string): Promise<string[]> {
  const out = await virsh(uri, ['list', '--all', '--name']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}
