// Whether a QEMU process (VM or qemu-storage-daemon) already runs an NBD server, and its exports:
// OSR starts its own NBD server in the process it protects unless it is given the socket of one
// that runs there (a process has at most one), so `osr protect` asks before anything is recorded.
import { QmpError, type QmpClient } from './qmp-client';

export interface NbdServerState {
  running: boolean;
  /** NBD exports of the process (`query-block-exports`): "<name or id> (node <node>)". */
  exports: string[];
}

/**
 * QMP has no query for the NBD server itself, so `nbd-server-start` is asked to listen where no
 * socket can be (below /dev/null, not a folder): QEMU answers "already running" when a server
 * runs; otherwise the bind fails and nothing is started.
 */
export async function nbdServerState(qmp: QmpClient): Promise<NbdServerState> {
  const exports = (
    await qmp
      .execute<Array<{ type: string; id: string; 'node-name': string }>>('query-block-exports')
      .catch(() => [])
  )
    .filter((e) => e.type === 'nbd')
    .map((e) => `${e.id} (node ${e['node-name']})`)
    .sort();
  let running = exports.length > 0;
  if (!running) {
    try {
      await qmp.execute('nbd-server-start', {
        addr: { type: 'unix', data: { path: '/dev/null/osr-nbd-probe.sock' } },
      });
      // Cannot happen (no socket can be there); if it did, leave nothing started.
      await qmp.execute('nbd-server-stop').catch(() => undefined);
    } catch (err) {
      running = err instanceof QmpError && /already running/i.test(err.desc);
    }
  }
  return { running, exports };
}

/** The refusal, in OSR's words, when OSR would have to start an NBD server beside a running one. */
export function nbdServerRunsMessage(exports: string[]): string {
  return (
    `this QEMU process already runs its own NBD server${exports.length ? ` (exports: ${exports.join(', ')})` : ''}, ` +
    "and OSR cannot start one beside it: pass that server's unix socket with --nbd <path> " +
    '(for qemu-storage-daemon, the path of its --nbd-server addr)'
  );
}

/** The connector was given no NBD socket, and the process already runs an NBD server of its own. */
export class NbdServerRunningError extends Error {
  constructor(readonly exports: string[]) {
    super(
      `an NBD server already runs in this QEMU process (e.g. qemu-storage-daemon --nbd-server${exports.length ? `; exports: ${exports.join(', ')}` : ''}): ` +
        'pass its unix socket path as the nbdSocket option',
    );
    this.name = 'NbdServerRunningError';
  }
}
