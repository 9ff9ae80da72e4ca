// A private OpenSSH server for a test (Debian's openssh-server): sshd on 127.0.0.1 at a port of
// its own, with a host key, a client key authorized for root and a known_hosts file holding the
// host key, all made by the test in one temporary folder. This machine plays the remote host:
// libvirt's ssh transports run `nc` (or virt-ssh-helper) here through it. Its log (LogLevel
// DEBUG1) shows every channel a client opened, read by the test as the server's own record.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SshServer {
  port: number;
  dir: string;
  /** Authorized for root. */
  keyFile: string;
  /** A key the server does not authorize. */
  strangerKeyFile: string;
  /** Holds the server's host key for [127.0.0.1]:port. */
  knownHosts: string;
  /** An empty known_hosts: the server's key is unknown there. */
  emptyKnownHosts: string;
  /** Unix sockets clients asked the server to connect them to (direct-streamlocal channels). */
  streamLocalTargets(): string[];
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function startSshServer(): Promise<SshServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-sshd-'));
  const file = (name: string) => path.join(dir, name);
  for (const key of ['host_key', 'client_key', 'stranger_key'])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', key, '-f', file(key)]);
  fs.copyFileSync(file('client_key.pub'), file('authorized_keys'));
  const port = await freePort();
  const hostKey = fs.readFileSync(file('host_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
  fs.writeFileSync(file('known_hosts'), `[127.0.0.1]:${port} ${hostKey}\n`);
  fs.writeFileSync(file('empty_known_hosts'), '');
  fs.writeFileSync(
    file('sshd_config'),
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      `HostKey ${file('host_key')}`,
      `AuthorizedKeysFile ${file('authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      `PidFile ${file('sshd.pid')}`,
      'LogLevel DEBUG1',
      '',
    ].join('\n'),
  );
  fs.mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation folder
  const log = file('sshd.log');
  const fd = fs.openSync(log, 'a');
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', file('sshd_config')], {
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  while (!fs.readFileSync(log, 'utf8').includes(`Server listening on 127.0.0.1 port ${port}`)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const text = fs.readFileSync(log, 'utf8');
      await stop();
      throw new Error(`sshd did not start: ${text.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    keyFile: file('client_key'),
    strangerKeyFile: file('stranger_key'),
    knownHosts: file('known_hosts'),
    emptyKnownHosts: file('empty_known_hosts'),
    streamLocalTargets: () =>
      [...fs.readFileSync(log, 'utf8').matchAll(/server_request_direct_streamlocal: .*target (\S+)/g)].map(
        (m) => m[1] as string,
      ),
    stop,
  };
}
