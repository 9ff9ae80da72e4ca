// Writable NBD exports of block nodes in a QEMU process (VM or qemu-storage-daemon): what the
// master target writes a failed-back machine's disks through. Each node gets its own export,
// named `<prefix><node>`, on the process's NBD server (started in a folder of ours if it has none).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { QmpError, type QmpClient } from './qmp-client';

// sun_path is 108 bytes on Linux including the terminating NUL.
const MAX_UNIX_PATH = 107;

/** The process runs an NBD server we cannot use, or ours cannot be placed: retrying will not help. */
export class NbdServerUnusableError extends Error {
  override readonly name = 'NbdServerUnusableError';
}

/** Adds a writable export per node unless it exists; returns the export names, in order. */
export async function addWritableExports(qmp: QmpClient, nodes: string[], prefix: string): Promise<string[]> {
  const exports = await qmp.execute<Array<{ id: string }>>('query-block-exports');
  const names: string[] = [];
  for (const node of nodes) {
    const id = `${prefix}${node}`;
    if (!exports.some((e) => e.id === id)) {
      await qmp.execute('block-export-add', { type: 'nbd', id, 'node-name': node, name: id, writable: true });
    }
    names.push(id);
  }
  return names;
}

/** Removes the named exports that exist; returns how many it removed. */
export async function removeExports(qmp: QmpClient, names: string[]): Promise<number> {
  const exports = await qmp.execute<Array<{ id: string }>>('query-block-exports');
  let removed = 0;
  for (const name of names) {
    if (!exports.some((e) => e.id === name)) continue;
    await qmp.execute('block-export-del', { id: name });
    removed++;
  }
  return removed;
}

/**
 * Starts the process's NBD server on `<dir>/<socketName>`, or finds the one an earlier call
 * started there; returns its socket. Throws NbdServerUnusableError when it cannot.
 */
export async function ensureNbdServerIn(qmp: QmpClient, dir: string, socketName: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const socketPath = path.join(dir, socketName);
  if (Buffer.byteLength(socketPath) > MAX_UNIX_PATH)
    throw new NbdServerUnusableError(`NBD socket path ${socketPath} is too long: use a shorter state folder`);
  try {
    await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
  } catch (err) {
    if (!(err instanceof QmpError && /already running/i.test(err.desc))) throw err;
    // Started by an earlier attempt: it is ours if its socket is there.
    try {
      await fs.stat(socketPath);
    } catch {
      throw new NbdServerUnusableError(
        `the original machine's QEMU process runs an NBD server OSR did not start: register its socket (protect with --nbd <socket>)`,
      );
    }
  }
  return socketPath;
}
