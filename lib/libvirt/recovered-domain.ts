// The definition of a recovered domain, made from the protected domain's own XML (kept in the
// vault at protect): same CPU, memory, machine type and devices; a new name and UUID; each
// recovered disk pointed at its image on the recovery host; NICs on the networks the recovery
// maps them to; serial ports that cannot follow (their files and sockets are the primary host's)
// made harmless, the first one written to a console log the boot probe reads; and an OSR
// metadata element naming the machine, job and kind, by which cleanup finds exactly what it made.
import crypto from 'node:crypto';
import { buildXml, parseXml, textOf, type XmlNode } from './virsh';

/** The namespace of OSR's element in a domain's (or network's) `<metadata>`. */
export const OSR_METADATA_NS = 'https://github.com/open-site-recovery/xmlns/recovery/1';
/** The guest agent's virtio-serial port name (what `virsh qemu-agent-command` talks to). */
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';

export interface OsrTag {
  machine: string;
  job: string;
  kind: 'drill' | 'failover';
}

export interface RecoveredDomainSpec {
  name: string;
  uuid: string;
  tag: OsrTag;
  /** The recovered images by the protected disk's target dev (vda …). */
  disks: Array<{ target: string; file: string; format: 'qcow2' | 'raw' }>;
  /** Every NIC goes on this network (a drill's isolated network). */
  allNicsOn?: string;
  /** NICs whose primary-site network (or bridge) is a key go on the value's network; others are kept. */
  networkMap?: Record<string, string>;
  /** The file the guest's first serial port (its console) is written to. */
  consoleLog: string;
}

export interface RecoveredDomain {
  xml: string;
  /** How the boot probe can hear the guest. */
  guestAgent: boolean;
  serialConsole: boolean;
  interfaces: number;
  /** Devices of the protected domain left out (cdroms, disks not recovered), for the job's status. */
  dropped: string[];
}

/** A UUID derived from the recovery (machine, job, kind): a retried define names the same domain. */
export function recoveredUuid(tag: OsrTag): string {
  const h = crypto.createHash('sha256').update(`${tag.kind}\n${tag.machine}\n${tag.job}`).digest('hex');
  // Version 4 layout (variant 10xx), from hashed bits rather than random ones.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** OSR's metadata element for a tag (the `osr` prefix is how libvirt keys it). */
export function osrMetadata(tag: OsrTag): XmlNode {
  return {
    'osr:recovery': {
      '@xmlns:osr': OSR_METADATA_NS,
      '@machine': tag.machine,
      '@job': tag.job,
      '@kind': tag.kind,
    },
  };
}

/** The OSR tag in a parsed `<metadata>`, whatever prefix it was stored under. */
export function tagOf(metadata: unknown): OsrTag | undefined {
  if (!metadata || typeof metadata !== 'object') return undefined;
  for (const value of Object.values(metadata as XmlNode)) {
    const el = (Array.isArray(value) ? value[0] : value) as XmlNode | undefined;
    if (!el || typeof el !== 'object') continue;
    const ns = Object.entries(el).find(([k]) => k.startsWith('@xmlns'))?.[1];
    if (ns !== OSR_METADATA_NS) continue;
    const { '@machine': machine, '@job': job, '@kind': kind } = el as Record<string, string>;
    if (machine && job && (kind === 'drill' || kind === 'failover')) return { machine, job, kind };
  }
  return undefined;
}

export function sameTag(a: OsrTag | undefined, b: OsrTag): boolean {
  return !!a && a.machine === b.machine && a.job === b.job && a.kind === b.kind;
}

const asArray = (v: unknown): XmlNode[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]) as XmlNode[];

/** Builds the recovered domain's XML from the protected domain's (refuses XML that is no domain). */
export function recoveredDomainXml(keptXml: string, spec: RecoveredDomainSpec): RecoveredDomain {
  const doc = parseXml(keptXml);
  const domain = doc.domain as XmlNode | undefined;
  if (!domain || typeof domain !== 'object') throw new Error('the kept definition is not a libvirt <domain>');
  const dropped: string[] = [];
  const out: XmlNode = { ...domain, name: spec.name, uuid: spec.uuid };
  delete out.id;
  out.metadata = { ...((domain.metadata as XmlNode | undefined) ?? {}), ...osrMetadata(spec.tag) };
  // UEFI variables live in a file of the primary host: libvirt makes a new one from its template.
  if (out.os && typeof out.os === 'object') {
    out.os = { ...(out.os as XmlNode) };
    delete (out.os as XmlNode).nvram;
  }
  const devices = { ...((domain.devices as XmlNode | undefined) ?? {}) };
  out.devices = devices;

  const byTarget = new Map(spec.disks.map((d) => [d.target, d]));
  const kept = asArray(devices.disk);
  const missing = spec.disks.filter(
    (d) => !kept.some((x) => (x.target as XmlNode | undefined)?.['@dev'] === d.target),
  );
  if (missing.length)
    throw new Error(`the kept definition has no disk ${missing.map((d) => d.target).join(', ')}`);
  devices.disk = kept.flatMap((d) => {
    const target = String((d.target as XmlNode | undefined)?.['@dev'] ?? '?');
    const image = byTarget.get(target);
    if (!image || (d['@device'] ?? 'disk') !== 'disk') {
      dropped.push(`${String(d['@device'] ?? 'disk')} ${target}`);
      return [];
    }
    const disk: XmlNode = { ...d, '@type': 'file', '@device': 'disk' };
    disk.driver = { ...((d.driver as XmlNode | undefined) ?? {}), '@name': 'qemu', '@type': image.format };
    disk.source = { '@file': image.file };
    delete disk.backingStore;
    return [disk];
  });

  const interfaces = asArray(devices.interface).map((nic) => {
    const source = (nic.source ?? {}) as XmlNode;
    const from = String(source['@network'] ?? source['@bridge'] ?? source['@dev'] ?? nic['@type'] ?? '');
    const to = spec.allNicsOn ?? spec.networkMap?.[from];
    const next: XmlNode = { ...nic };
    // The tap device's name is the primary host's.
    delete next.target;
    if (to === undefined) return next;
    delete next.virtualport;
    return { ...next, '@type': 'network', source: { '@network': to } };
  });
  if (interfaces.length) devices.interface = interfaces;

  // Files, sockets and devices of the primary host: the first serial port writes to the console
  // log, any other is a null device (the guest keeps its port); consoles follow serial 0.
  const serials = asArray(devices.serial);
  devices.serial = serials.map((s, i) => {
    const target = s.target as XmlNode | undefined;
    return i === 0
      ? { '@type': 'file', source: { '@path': spec.consoleLog }, ...(target ? { target } : {}) }
      : { '@type': 'null', ...(target ? { target } : {}) };
  });
  if (!serials.length) delete devices.serial;
  devices.console = asArray(devices.console)
    .filter((c) => ((c.target as XmlNode | undefined)?.['@type'] ?? 'serial') !== 'serial')
    .map((c) => ({ '@type': 'pty', ...(c.target ? { target: c.target } : {}) }));
  if (!(devices.console as XmlNode[]).length) delete devices.console;
  let guestAgent = false;
  devices.channel = asArray(devices.channel).map((c) => {
    const name = (c.target as XmlNode | undefined)?.['@name'];
    if (name === GUEST_AGENT_PORT) guestAgent = true;
    // libvirt makes the socket of a unix channel without a path in its own run folder.
    if (c['@type'] !== 'unix') return c;
    const next = { ...c };
    delete next.source;
    return next;
  });
  if (!(devices.channel as XmlNode[]).length) delete devices.channel;

  return {
    xml: buildXml({ domain: out }),
    guestAgent,
    serialConsole: serials.length > 0,
    interfaces: interfaces.length,
    dropped,
  };
}

/** An isolated network for a drill: a bridge and no `<forward>`, so nothing leaves it. */
export function drillNetworkXml(name: string, bridge: string, tag: OsrTag): string {
  return buildXml({
    network: { name, metadata: osrMetadata(tag), bridge: { '@name': bridge, '@stp': 'on' } },
  });
}

/** The name and text of a domain (or network) definition's `<name>` and OSR tag. */
export function nameAndTag(xml: string, root: 'domain' | 'network'): { name?: string; tag?: OsrTag } {
  const el = parseXml(xml)[root] as XmlNode | undefined;
  return { name: textOf(el?.name), tag: tagOf(el?.metadata) };
}
