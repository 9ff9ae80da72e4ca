// SSH to a machine through the ssh2 library: key login, the host key accepted only when its
// SHA-256 fingerprint is the one given (no trust on first use), commands with their exit code and
// output (a stream may feed a command's stdin), and files copied over SFTP.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Client, SFTPWrapper } from 'ssh2';

export interface SshTarget {
  user: string;
  host: string;
  port: number;
}

/** `user@host[:port]` (port 22 by default). */
export function parseSshTarget(text: string): SshTarget {
  const m = /^([A-Za-z0-9._-]+)@(\[[^\]]+\]|[^:@\s]+)(?::(\d{1,5}))?$/.exec(text);
  const port = Number(m?.[3] ?? 22);
  if (!m || port < 1 || port > 65535)
    throw new Error(`"${text}" is not user@host or user@host:port (e.g. root@web-7.example.net)`);
  return { user: m[1] as string, host: (m[2] as string).replace(/^\[|\]$/g, ''), port };
}

/** A host key's fingerprint as OpenSSH prints it: SHA256:<base64, no padding>. */
export function hostKeyFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export class HostKeyError extends Error {
  override name = 'HostKeyError';
}

export interface PutFile {
  local: string;
  remote: string;
  mode: number;
  /** Called as the copy goes, with the bytes copied so far. */
  onBytes?: (copied: number) => void;
}

export interface SshSession {
  hostKey: string;
  /** Runs a command; `input`, when given, is its stdin (ended at the input's end). */
  run(
    command: string,
    timeoutMs?: number,
    input?: Readable,
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Copies files over SFTP (their folders must exist). */
  put(files: PutFile[]): Promise<void>;
  close(): void;
}

export async function openSsh(
  target: SshTarget,
  privateKey: Buffer,
  expectedHostKey: string | undefined,
  timeoutMs = 60_000,
): Promise<SshSession> {
  // Loaded here: only agent installs use SSH, and every `osr` command would pay its load.
  const { Client } = await import('ssh2');
  const client = new Client();
  let seen = '';
  return new Promise((resolve, reject) => {
    // `on`, not `once`: ssh2 may emit a second error (or one after ready, when the machine goes
    // away mid-command); with no listener that would end the process. Commands see the close.
    let settled = false;
    client.on('error', (err: Error) => {
      client.end();
      if (settled) return;
      settled = true;
      const where = `${target.user}@${target.host}:${target.port}`;
      if (seen && !expectedHostKey)
        return reject(
          new HostKeyError(
            `${where} showed host key ${seen}, which is not known: check it on the machine (\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`, or dropbearkey -y) and give it with --host-key-fingerprint ${seen}`,
          ),
        );
      if (seen && seen !== expectedHostKey)
        return reject(
          new HostKeyError(
            `${where} showed host key ${seen}, not the expected ${expectedHostKey}: refusing to log in (another machine, or its key changed; check it on the machine)`,
          ),
        );
      reject(new Error(`ssh to ${where} failed: ${err.message}`));
    });
    client.once('ready', () => {
      settled = true;
      resolve({
        hostKey: seen,
        run: (command, ms = 120_000, input) => run(client, command, ms, input),
        put: (files) => put(client, files),
        close: () => void client.end(),
      });
    });
    client.connect({
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey,
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => {
        seen = hostKeyFingerprint(key);
        return expectedHostKey !== undefined && seen === expectedHostKey;
      },
    });
  });
}

function run(
  client: Client,
  command: string,
  timeoutMs: number,
  input?: Readable,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, channel) => {
      if (err) return reject(err);
      if (input) {
        // A local read error ends the command (it sees no end of its input and is closed).
        input.once('error', (e: Error) => {
          reject(new Error(`\`${command}\`: reading its input: ${e.message}`));
          channel.destroy();
        });
        input.pipe(channel);
        channel.on('close', () => input.unpipe(channel).destroy());
      }
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => {
        channel.destroy();
        reject(new Error(`\`${command}\` did not end within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      channel.on('data', (d: Buffer) => (stdout += d.toString()));
      channel.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      channel.on('close', (code: number | null) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  });
}

async function put(client: Client, files: PutFile[]): Promise<void> {
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
    client.sftp((err, s) => (err ? reject(new Error(`no SFTP on the machine: ${err.message}`)) : resolve(s))),
  );
  try {
    for (const f of files)
      await new Promise<void>((resolve, reject) =>
        sftp.fastPut(
          f.local,
          f.remote,
          { mode: f.mode, step: f.onBytes && ((copied) => f.onBytes?.(copied)) },
          (err) => (err ? reject(new Error(`copying ${f.remote}: ${err.message}`)) : resolve()),
        ),
      );
  } finally {
    sftp.end();
  }
}
