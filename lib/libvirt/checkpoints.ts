// OSR's checkpoint chain on a libvirt domain. Every OSR checkpoint is named `osr-…`; the oldest one
// is the base: the last point whose data is stored (or where tracking started). Each freeze is a
// pull-mode backup incremental from the base that creates the point's own checkpoint at the same
// instant; a stored point deletes the checkpoints before it (it becomes the base), a failed one
// deletes only its own (libvirt merges its bitmap into its parent), so the next backup, again
// incremental from the base, carries every change since the last stored point.
import { parseXml, virsh, virshWithXml, buildXml, VirshError, type XmlNode } from './virsh';

export const CHECKPOINT_PREFIX = 'osr-';
export const BASE_CHECKPOINT = `${CHECKPOINT_PREFIX}base`;

export function checkpointOf(pitId: string): string {
  return `${CHECKPOINT_PREFIX}${pitId}`;
}

/** OSR's checkpoints of the domain, oldest (the base) first. */
export async function osrCheckpoints(uri: string, domain: string): Promise<string[]> {
  const out = await virsh(uri, ['checkpoint-list', '--topological', '--name', '--', domain]);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(CHECKPOINT_PREFIX));
}

/** Disks (target devs) that have a bitmap in a checkpoint. */
export async function checkpointDisks(uri: string, domain: string, checkpoint: string): Promise<string[]> {
  const xml = await virsh(uri, ['checkpoint-dumpxml', '--no-domain', '--', domain, checkpoint]);
  const disks = (((parseXml(xml).domaincheckpoint as XmlNode[])[0]?.disks as XmlNode | undefined)?.disk ??
    []) as XmlNode[];
  return disks.filter((d) => d['@checkpoint'] === 'bitmap').map((d) => String(d['@name']));
}

/** The checkpoint XML for `name` with bitmaps on `tracked` disks and none on the others. */
export function checkpointXml(name: string, tracked: string[], others: string[]): string {
  return buildXml({
    domaincheckpoint: {
      name,
      disks: {
        disk: [
          ...tracked.map((d) => ({ '@name': d, '@checkpoint': 'bitmap' })),
          ...others.map((d) => ({ '@name': d, '@checkpoint': 'no' })),
        ],
      },
    },
  });
}

/** Creates a checkpoint on its own (where tracking starts: the base). */
export async function createCheckpoint(
  uri: string,
  domain: string,
  name: string,
  tracked: string[],
  others: string[],
): Promise<void> {
  await virshWithXml(uri, ['checkpoint-create', '--domain', domain, '--xmlfile', '@cp'], {
    cp: checkpointXml(name, tracked, others),
  });
}

/**
 * Deletes a checkpoint and its bitmaps (libvirt merges a deleted checkpoint's changes into its
 * parent, so no change is lost); `metadataOnly` when the bitmaps are gone already. Absent: no-op.
 */
export async function deleteCheckpoint(
  uri: string,
  domain: string,
  name: string,
  options: { metadataOnly?: boolean } = {},
): Promise<void> {
  try {
    await virsh(uri, [
      'checkpoint-delete',
      ...(options.metadataOnly ? ['--metadata'] : []),
      '--',
      domain,
      name,
    ]);
  } catch (err) {
    if (err instanceof VirshError && /no domain checkpoint with matching name/i.test(err.detail)) return;
    throw err;
  }
}
