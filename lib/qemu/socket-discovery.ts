// Discovery of a directory of QEMU monitor sockets (`<machine>.qmp`, as plain QEMU setups keep
// them): each monitor is asked for its block nodes (size, format) and whether change tracking can
// persist (qcow2 keeps dirty bitmaps across restarts; raw loses them and is resynchronized by
// checksums). Machines already protected are found by the socket file itself (device and inode),
// whatever path they were protected with. Runs on the host's process server: only it sees the
// directory.
import fs from 'node:fs';
import path from 'node:path';
import type { DiscoveredMachine } from '../../shared/host-types';
import { CbtConnector } from './cbt-connector';
import { QmpClient } from './qmp-client';

export class SocketDirError extends Error {
  override name = 'SocketDirError';
}

/** The monitor sockets of `dir`: its `*.qmp` sockets, or every socket when it has none. */
export function monitorSockets(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    if (!fs.statSync(dir).isDirectory())
      throw new SocketDirError(
        `${dir} is not a directory: give the directory that holds the machines' QMP sockets`,
      );
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err instanceof SocketDirError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new SocketDirError(
      code === 'ENOENT'
        ? `no directory ${dir} on this process server's host: give the directory that holds the machines' QMP sockets (e.g. /run/qemu), on the host whose process server serves it`
        : `cannot read ${dir} (${code ?? (err as Error).message}): let the process server's user read it`,
    );
  }
  const sockets = entries.filter((e) => e.isSocket()).map((e) => e.name);
  const qmp = sockets.filter((n) => n.endsWith('.qmp'));
  return (qmp.length ? qmp : sockets).sort().map((n) => path.join(dir, n));
}

/**
 * One DiscoveredMachine per monitor socket of `dir`. `registered`: protected machines with their
 * QMP socket paths (the one whose socket is the same file is `protectedAs`).
 */
export async function discoverSocketDir(
  dir: string,
  host: string,
  registered: Array<{ name: string; qmpSocket: string }> = [],
): Promise<DiscoveredMachine[]> {
  const out: DiscoveredMachine[] = [];
  for (const socket of monitorSockets(dir)) {
    const stat = fs.statSync(socket);
    const protectedAs = registered.find((r) => sameFile(stat, r.qmpSocket))?.name;
    out.push({ ...(await askMonitor(socket, host)), ...(protectedAs ? { protectedAs } : {}) });
  }
  return out;
}

async function askMonitor(socket: string, host: string): Promise<DiscoveredMachine> {
  const name = path.basename(socket).replace(/\.qmp$/, '');
  const base = { host, name, details: { qmpSocket: socket } };
  let qmp: QmpClient | undefined;
  try {
    try {
      qmp = await QmpClient.connect(socket, { greetingTimeoutMs: 3000 });
    } catch (err) {
      const busy = /sent no greeting/.test((err as Error).message);
      return {
        ...base,
        state: busy ? 'monitor-busy' : 'not-answering',
        disks: [],
        changeTracking: {
          possible: false,
          reason: busy
            ? 'another client holds its QMP monitor (QEMU serves one at a time); discover again when it lets go'
            : `its monitor does not answer (${(err as Error).message}); a stale socket of a stopped process?`,
        },
      };
    }
    const disks = await new CbtConnector(qmp, { workDir: '/nonexistent' }).listDisks();
    const state = await qmp.execute<{ status: string }>('query-status').then(
      (s) => s.status,
      () => 'running', // qemu-storage-daemon has no run state: it serves while it runs
    );
    const raw = disks.filter((d) => d.format === 'raw').map((d) => d.node);
    return {
      ...base,
      state,
      disks: disks.map((d) => ({
        diskId: d.node,
        sizeBytes: d.size,
        format: d.format,
        location: d.file,
        persistentTracking: d.format === 'qcow2',
      })),
      changeTracking:
        disks.length === 0
          ? { possible: false, reason: 'it has no qcow2 or raw disk node to track' }
          : raw.length
            ? {
                possible: true,
                reason: `raw disk${raw.length > 1 ? 's' : ''} ${raw.join(', ')}: tracking is lost when the process restarts, then resynchronized by checksums (qcow2 keeps it)`,
              }
            : { possible: true },
    };
  } finally {
    await qmp?.close();
  }
}

/** The same socket file: same device and inode (symlinks, relative paths, bind mounts alike). */
export function sameFile(a: fs.Stats, b: string): boolean {
  try {
    const s = fs.statSync(b);
    return s.dev === a.dev && s.ino === a.ino;
  } catch {
    return false;
  }
}
