// Who uses a disk: mounted filesystems, swap and other device-mapper stacks (LVM, md) cannot have
// the agent's stack slipped under them live, and a mounted osr-<disk> is what fsfreeze quiesces.
import fs from 'node:fs';

const read = (file: string): string => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** What holds `disk` (vdb) or one of its partitions, in words; undefined when nothing does. */
export function diskInUse(disk: string): string | undefined {
  const own = new RegExp(`^/dev/${disk}(p?\\d+)?$`);
  for (const line of read('/proc/mounts').split('\n')) {
    const [source, mountPoint] = line.split(' ');
    if (source && mountPoint && own.test(source)) return `mounted at ${mountPoint.replace(/\\040/g, ' ')}`;
  }
  for (const line of read('/proc/swaps').split('\n').slice(1)) {
    const [source] = line.split(/\s+/);
    if (source && own.test(source)) return 'used as swap';
  }
  let holders: string[] = [];
  try {
    holders = fs.readdirSync(`/sys/block/${disk}/holders`);
  } catch {
    /* no such folder: nothing holds it */
  }
  // The agent's own stack (osr-<disk>…) is not a use that stops tracking.
  const others = holders.filter((h) => !read(`/sys/block/${h}/dm/name`).startsWith(`osr-${disk}`));
  if (others.length) return `held by ${others.join(', ')} (LVM, RAID or another device-mapper stack)`;
  return undefined;
}

/** Mount points of the device-mapper device with this minor (its osr-<disk> name or dm-<minor>). */
export function mountPointsOf(name: string, minor: number): string[] {
  const points: string[] = [];
  for (const line of read('/proc/mounts').split('\n')) {
    const [source, mountPoint] = line.split(' ');
    if (!source || !mountPoint) continue;
    if (source === `/dev/mapper/${name}` || source === `/dev/dm-${minor}`)
      points.push(mountPoint.replace(/\\040/g, ' '));
  }
  return points;
}
