// One large file (the agent's node, ~99 MB) onto a machine over SSH, in a fraction of its bytes
// and checked before it is used: gzip'ed here and streamed into `gzip -dc` on the machine (node
// shrinks to about 40 % at level 1), written beside its name, its SHA-256 checked there, flushed
// to disk, and only then renamed into place (a running copy keeps its old inode: no "text file
// busy"). A machine that already has the same bytes gets nothing. Without gzip there, the bytes
// go over SFTP as before and the same check, flush and rename follow.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { SshSession } from './session';

/** What the machine offers for a verified push (probeCommand's answer). */
export interface PushProbe {
  gzip: boolean;
  sha256sum: boolean;
  /** The SHA-256 of the file already at the remote path, if any. */
  existing?: string;
}

const shaCache = new Map<string, string>();

/** The SHA-256 of a local file (hex), computed once per path, size and change time. */
export async function fileSha256(file: string): Promise<string> {
  const st = fs.statSync(file);
  const key = `${file}\0${st.size}\0${st.mtimeMs}`;
  const known = shaCache.get(key);
  if (known) return known;
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  const sha = hash.digest('hex');
  shaCache.set(key, sha);
  return sha;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** A shell line that prints what probeResult reads: the tools there and the remote file's SHA-256. */
export function probeCommand(remote: string): string {
  return [
    'command -v gzip >/dev/null && echo gzip=yes',
    'command -v sha256sum >/dev/null && echo sha256sum=yes',
    `[ -f ${quote(remote)} ] && echo existing=$(sha256sum ${quote(remote)} 2>/dev/null | cut -d' ' -f1)`,
    'true',
  ].join('; ');
}

export function probeResult(stdout: string): PushProbe {
  const lines = new Map(
    stdout
      .split('\n')
      .map((l) => l.trim().split('='))
      .filter((kv) => kv.length === 2) as Array<[string, string]>,
  );
  const existing = lines.get('existing');
  return {
    gzip: lines.get('gzip') === 'yes',
    sha256sum: lines.get('sha256sum') === 'yes',
    ...(existing && /^[0-9a-f]{64}$/.test(existing) ? { existing } : {}),
  };
}

/**
 * The shell that checks `<remote>.part` against `sha256`, flushes it (sync with a file argument is
 * an fsync of that file, in coreutils and busybox), renames it over `remote` and flushes the folder.
 */
function finishCommand(remote: string, mode: number, sha256: string): string {
  const part = quote(`${remote}.part`);
  return [
    `s=$(sha256sum ${part} | cut -d' ' -f1)`,
    `if [ "$s" != ${sha256} ]; then rm -f ${part}; echo "${remote} arrived with SHA-256 $s, not ${sha256}" >&2; exit 65; fi`,
    `chmod ${mode.toString(8)} ${part} && sync ${part} && mv -f ${part} ${quote(remote)} && sync ${quote(path.posix.dirname(remote))}`,
  ].join('; ');
}

export type PushHow = 'unchanged' | 'gzip' | 'sftp';

/**
 * Puts `local` at `remote` (its folder must exist), verified and on disk before it has its name;
 * `progress` hears each tenth of the file read (10, 20 … 90).
 * `fresh` opens another session for the check after an SFTP copy: dropbear once failed an exec
 * that followed an SFTP channel on the same session.
 */
export async function pushVerified(
  ssh: SshSession,
  fresh: <T>(use: (ssh: SshSession) => Promise<T>) => Promise<T>,
  file: { local: string; remote: string; mode: number },
  probe: PushProbe,
  progress: (percent: number) => void = () => undefined,
): Promise<PushHow> {
  if (!probe.sha256sum) throw new Error(`there is no sha256sum to check the copy of ${file.remote} with`);
  const sha256 = await fileSha256(file.local);
  if (probe.existing === sha256) return 'unchanged';
  const finish = finishCommand(file.remote, file.mode, sha256);
  const check = (r: { code: number; stderr: string }): void => {
    if (r.code !== 0) throw new Error(`copying ${file.remote}: ${r.stderr.trim() || `exit ${r.code}`}`);
  };
  const size = fs.statSync(file.local).size;
  let shown = 0;
  const sent = (bytes: number): void => {
    const percent = Math.floor((bytes / size) * 10) * 10;
    if (percent > shown && percent < 100) progress((shown = percent));
  };
  if (probe.gzip) {
    // Level 1: faster here than most links (~50 MB/s), and within 12 % of level 9's size.
    const input = createGzip({ level: 1 });
    const source = fs.createReadStream(file.local);
    let read = 0;
    source.on('data', (chunk) => sent((read += chunk.length)));
    pipeline(source, input, () => undefined); // an error reaches `run` through input
    const part = quote(`${file.remote}.part`);
    check(await ssh.run(`gzip -dc > ${part} || { rm -f ${part}; exit 66; }; ${finish}`, 30 * 60_000, input));
    return 'gzip';
  }
  await ssh.put([{ local: file.local, remote: `${file.remote}.part`, mode: file.mode, onBytes: sent }]);
  check(await fresh((s) => s.run(finish, 10 * 60_000)));
  return 'sftp';
}
