// The OpenSSH client (`ssh`, Debian's openssh-client) for reaching a remote host as libvirt's own
// qemu+ssh transport does: the same binary, the same known_hosts and ~/.ssh/config, so OSR trusts
// exactly the hosts libvirt trusts. Commands with their output, and a local unix socket forwarded
// to a unix socket on the host (`ssh -L local:remote`). Host keys are checked strictly, always:
// BatchMode (no prompt, no password) and StrictHostKeyChecking=yes (no trust on first use).
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where and how to log in; `knownHosts` replaces the user's ~/.ssh/known_hosts when given. */
export interface OpenSshTarget {
  host: string;
  port?: number;
  user?: string;
  keyFile?: string;
  knownHosts?: string;
}

/** ssh failed: `reason` says why in a few words; `detail` is ssh's own text. */
export class OpenSshError extends Error {
  override readonly name = 'OpenSshError';
  constructor(
    readonly reason: 'host-key-unknown' | 'host-key-changed' | 'auth' | 'unreachable' | 'other',
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** ssh's options for a target; never anything that loosens host-key checking. */
export function sshOptions(t: OpenSshTarget): string[] {
  return [
    ...(t.port ? ['-p', String(t.port)] : []),
    ...(t.user ? ['-l', t.user] : []),
    ...(t.keyFile ? ['-i', t.keyFile, '-o', 'IdentitiesOnly=yes'] : []),
    ...(t.knownHosts ? ['-o', `UserKnownHostsFile="${t.knownHosts}"`] : []),
    ...['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=20'],
    ...['-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-T'],
  ];
}

/** Sorts ssh's error output into the few causes an operator can act on. */
export function classifySshFailure(stderr: string): OpenSshError {
  const text = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('@@@') && !/^Warning: Permanently added/.test(l))
    .join(' ');
  const reason = /REMOTE HOST IDENTIFICATION HAS CHANGED|key for .* has changed/i.test(stderr)
    ? 'host-key-changed'
    : /No \S+ host key is known|Host key verification failed/i.test(stderr)
      ? 'host-key-unknown'
      : /Permission denied|Too many authentication failures|no more authentication methods/i.test(stderr)
        ? 'auth'
        : /Connection refused|timed out|No route to host|Could not resolve|Network is unreachable|Connection closed by|Connection reset/i.test(
              stderr,
            )
          ? 'unreachable'
          : 'other';
  return new OpenSshError(reason, text || 'ssh failed without a message');
}

/** Runs `command` on the host; resolves with its stdout. */
export function sshRun(target: OpenSshTarget, command: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'ssh',
      [...sshOptions(target), '--', target.host, command],
      { timeout: timeoutMs, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT')
          return reject(
            new OpenSshError(
              'other',
              'ssh is not installed on this process server: install openssh-client (apt-get install openssh-client)',
            ),
          );
        // ssh exits 255 for its own failures; any other code is the remote command's.
        if (err.killed)
          return reject(new OpenSshError('unreachable', `ssh did not end within ${timeoutMs / 1000} s`));
        if (err.code === 255) return reject(classifySshFailure(stderr));
        reject(
          new OpenSshError(
            'other',
            `\`${command}\` failed on ${target.host}: ${stderr.trim() || err.message}`,
          ),
        );
      },
    );
    child.stdin?.end();
  });
}

export interface UnixTunnel {
  /** The local socket; each connection to it is one SSH channel to the remote socket. */
  socket: string;
  /** What ssh said so far (a channel the remote refused shows here). */
  stderr(): string;
  close(): Promise<void>;
}

/**
 * Forwards a fresh local unix socket (in a folder only this user can enter: whoever connects reads
 * what the remote socket serves) to `remoteSocket` on the host. Resolves once ssh has logged in
 * and listens; rejects with the classified failure when ssh exits first.
 */
export async function openUnixTunnel(
  target: OpenSshTarget,
  remoteSocket: string,
  timeoutMs = 60_000,
): Promise<UnixTunnel> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-tun-'));
  const socket = path.join(dir, 'tunnel.sock');
  const child = spawn(
    'ssh',
    [
      ...sshOptions(target),
      ...['-o', 'ExitOnForwardFailure=yes', '-L', `${socket}:${remoteSocket}`],
      '--',
      target.host,
      // Not -N: a command that ends when our end of its stdin closes, so a process server that
      // dies (even by SIGKILL) leaves no tunnel behind.
      'cat >/dev/null',
    ],
    { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
  );
  let stderr = '';
  child.once('error', (err) => (stderr += `\n${err.message}`)); // ssh missing: exits at once
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8192)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const close = async () => {
    child.stdin?.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  // ssh binds the local socket only after it logged in: its appearance is the signal.
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await close();
      throw Date.now() > deadline
        ? new OpenSshError('unreachable', `ssh to ${target.host} did not log in within ${timeoutMs / 1000} s`)
        : classifySshFailure(stderr);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { socket, stderr: () => stderr, close };
}
