// e2fsprogs' view of an ext4 image file, as an operator would check a recovered disk: whether
// `e2fsck -fn` finds it clean, its superblock's features (needs_recovery: the journal was not
// flushed) and one file's content (debugfs, no mount).
import { execFileSync } from 'node:child_process';

export function inspectExt4(
  image: string,
  file: string,
): { fsck: number; features: string; content: string } {
  let fsck = 0;
  try {
    execFileSync('e2fsck', ['-fn', image], { stdio: 'pipe' });
  } catch (err) {
    fsck = (err as { status: number }).status;
  }
  const run = (cmd: string, args: string[]) =>
    execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const features = /Filesystem features:\s*(.*)/.exec(run('dumpe2fs', ['-h', image]))?.[1] ?? '';
  return { fsck, features, content: run('debugfs', ['-R', `cat ${file}`, image]) };
}
