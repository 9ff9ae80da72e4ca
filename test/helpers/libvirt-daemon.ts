// A private libvirtd for a test: Debian's libvirtd run as an unprivileged user (nobody) in
// session mode, every folder of it (config, runtime, cache, data) inside one temporary folder,
// reached by OSR as `qemu+unix:///session?socket=<dir>/run/libvirt/libvirt-sock`. Nothing is shared
// with the system's libvirt or with other tests; no systemd, no D-Bus, no KVM (domain type qemu:
// TCG). stop() destroys its domains and leaves no process and no file behind.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { virsh } from '../../lib/libvirt/virsh';

const NOBODY = 65534;

export interface LibvirtDaemon {
  /** The folder (owned by nobody) for the daemon and the test's domains' files. */
  dir: string;
  uri: string;
  /** Stops libvirtd (its domains keep running, as with a real restart) and starts it again. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Makes files made by the test (as root) usable by the session daemon's QEMU (nobody). */
export function giveToDaemon(file: string): void {
  fs.chownSync(file, NOBODY, NOBODY);
}

/**
 * `netAdmin`: the daemon keeps CAP_NET_ADMIN (ambient, through util-linux's setpriv, which execs
 * libvirtd in its own place), so it can create the bridges of the networks it starts.
 */
export async function startLibvirtDaemon(options: { netAdmin?: boolean } = {}): Promise<LibvirtDaemon> {
  // Short: the NBD and serial sockets live below it (unix socket paths are limited to 107 bytes).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-lvd-'));
  fs.chmodSync(dir, 0o755);
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: dir,
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
    XDG_DATA_HOME: path.join(dir, 'data'),
  };
  fs.mkdirSync(path.join(env.XDG_CONFIG_HOME, 'libvirt'), { recursive: true });
  // QEMU's output to files, not through virtlogd (which would outlive the test by two minutes).
  fs.writeFileSync(path.join(env.XDG_CONFIG_HOME, 'libvirt', 'qemu.conf'), 'stdio_handler = "file"\n');
  execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, dir]);
  const socket = path.join(env.XDG_RUNTIME_DIR, 'libvirt', 'libvirt-sock');
  const uri = `qemu+unix:///session?socket=${socket}`;
  const log = path.join(dir, 'libvirtd.log');
  let child: ChildProcess | undefined;

  const start = async () => {
    fs.rmSync(socket, { force: true });
    const fd = fs.openSync(log, 'a');
    child = options.netAdmin
      ? spawn(
          'setpriv',
          [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            '--clear-groups',
            '--inh-caps=+net_admin',
            '--ambient-caps=+net_admin',
            'libvirtd',
            '--timeout',
            '0',
          ],
          { env, stdio: ['ignore', fd, fd] },
        )
      : spawn('libvirtd', ['--timeout', '0'], { uid: NOBODY, gid: NOBODY, env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`libvirtd exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
      if (
        fs.existsSync(socket) &&
        (await virsh(uri, ['version']).then(
          () => true,
          () => false,
        ))
      )
        return;
      if (Date.now() > deadline) throw new Error(`libvirtd did not answer within 30 s (log ${log})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const halt = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  };

  await start();
  return {
    dir,
    uri,
    async restart() {
      await halt();
      await start();
    },
    async stop() {
      try {
        const running = (await virsh(uri, ['list', '--name']).catch(() => ''))
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean);
        for (const d of running) await virsh(uri, ['destroy', '--', d]).catch(() => undefined);
      } finally {
        await halt();
        killLeftQemu(dir);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** QEMU processes whose pid files are in the daemon's folder (a daemon that died without destroying them). */
function killLeftQemu(dir: string): void {
  const run = path.join(dir, 'run', 'libvirt', 'qemu', 'run');
  if (!fs.existsSync(run)) return;
  for (const f of fs.readdirSync(run).filter((n) => n.endsWith('.pid'))) {
    const pid = Number(fs.readFileSync(path.join(run, f), 'utf8').trim());
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}
