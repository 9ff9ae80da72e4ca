// The agent upgrading itself through its own connection (no SSH after install): the process
// server stages a bundle (bundle.ts) in chunks, `verify` checks its SHA-256 and unpacks it into
// agent.new beside the running agent/, and `switch` swaps the folders, starts a watchdog from the
// OLD code and stops this agent cleanly (its change log stays trusted), so that its service
// restarts it into the new code. The new agent confirms itself at its first welcome; without that
// confirmation by the deadline the watchdog swaps the old folder back and stops the new agent, so
// the service runs the old version again: a bad bundle or a new version that cannot connect rolls
// back by itself. The id, credential (/etc/osr-agent) and change log (/var/lib/osr-agent) are not
// in the swapped folder, so they stay. The unpacked folder, the swaps and the marker are flushed to
// disk (tracking/durable.ts) before they are relied on. The launcher beside agent/ is kept current
// by the new code itself at its start (launcher.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ownVersion, unpackBundle } from './bundle';
import { fsyncPath, writeDurably } from './tracking/durable';
import { encode, UPGRADE_CHUNK_BYTES, type UpgradeRequest, type VerifyResult } from './protocol';

/** /opt/osr-agent: the folder holding agent/ and the launcher. */
const HOME = path.dirname(__dirname);
const CURRENT = path.join(HOME, 'agent');
const NEXT = path.join(HOME, 'agent.new');
const OLD = path.join(HOME, 'agent.old');
const FAILED = path.join(HOME, 'agent.failed');
const STAGED = path.join(HOME, 'upgrade.bundle');
export const MARKER = path.join(HOME, 'upgrade.json');

interface Marker {
  from: string;
  to: string;
  deadline: string;
  state: 'pending' | 'confirmed' | 'rolled-back';
  reason?: string;
}

function readMarker(): Marker | undefined {
  try {
    return JSON.parse(fs.readFileSync(MARKER, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

function writeMarker(m: Marker): void {
  writeDurably(MARKER, `${JSON.stringify(m)}\n`, 0o644);
}

let verified: VerifyResult | undefined;

function serve(request: UpgradeRequest, restart: () => void): unknown {
  switch (request.op) {
    case 'stage': {
      const data = Buffer.from(request.data, 'base64');
      if (data.length > UPGRADE_CHUNK_BYTES)
        throw new Error(`a chunk of at most ${UPGRADE_CHUNK_BYTES} bytes`);
      const size = request.offset === 0 ? 0 : fs.statSync(STAGED).size;
      if (request.offset !== size) throw new Error(`chunk at ${request.offset}, staged ${size}: start again`);
      if (request.offset === 0) verified = undefined;
      fs[request.offset === 0 ? 'writeFileSync' : 'appendFileSync'](STAGED, data);
      return { staged: size + data.length };
    }
    case 'verify': {
      verified = undefined;
      const bytes = fs.readFileSync(STAGED);
      fs.rmSync(STAGED, { force: true });
      if (bytes.length !== request.size)
        throw new Error(`the bundle arrived with ${bytes.length} bytes, not ${request.size}: upgrade again`);
      const to = unpackBundle(bytes, request.sha256, NEXT);
      // On disk before the switch names it agent/: a power loss must not leave empty files there.
      fsyncPath(NEXT, true);
      verified = { from: ownVersion(), to };
      return verified;
    }
    case 'switch': {
      if (!verified || !fs.existsSync(NEXT))
        throw new Error('no verified bundle: stage and verify one first');
      const result = verified;
      verified = undefined;
      fs.rmSync(OLD, { recursive: true, force: true });
      fs.renameSync(CURRENT, OLD);
      fs.renameSync(NEXT, CURRENT);
      fsyncPath(HOME);
      const deadline = new Date(Date.now() + request.timeoutSeconds * 1000).toISOString();
      writeMarker({ ...result, deadline, state: 'pending' });
      // The watchdog is the old code (agent.old), in a session of its own: it outlives this agent.
      spawn(process.execPath, [path.join(OLD, 'main.js'), 'upgrade-watch'], {
        detached: true,
        stdio: 'ignore',
      }).unref();
      // The reply goes out first; then this agent stops cleanly and its service starts the new one.
      setTimeout(restart, 500);
      return { ...result, deadline };
    }
  }
}

/** Serves the upgrade requests; `restart` stops this agent cleanly (its service starts it again). */
export function upgradeHandler(
  restart: () => void,
): (id: number, request: UpgradeRequest, write: (bytes: string) => void) => void {
  return (id, request, write) => {
    try {
      write(encode({ type: 'reply', id, result: serve(request, restart) }));
    } catch (err) {
      write(encode({ type: 'reply', id, error: { name: 'Error', message: (err as Error).message } }));
    }
  };
}

export const isUpgrade = (request: { op: string }): request is UpgradeRequest =>
  request.op === 'stage' || request.op === 'verify' || request.op === 'switch';

/** Called at a welcome: an upgrade that brought this version is confirmed (the watchdog then ends). */
export function confirmUpgrade(): void {
  const m = readMarker();
  if (m?.state === 'pending' && m.to === ownVersion()) writeMarker({ ...m, state: 'confirmed' });
}

/** Agents running from agent/ (the new code): their pids, from /proc. */
function runningAgents(): number[] {
  const needle = `${CURRENT}/main.js\0run`;
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'latin1').includes(needle)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** `osr-agent upgrade-watch`, run from the old code: confirm or roll back by the deadline. */
export async function watchUpgrade(log: (line: string) => void): Promise<number> {
  for (;;) {
    const m = readMarker();
    if (!m || m.state === 'rolled-back') return 0;
    if (m.state === 'confirmed') {
      fs.rmSync(OLD, { recursive: true, force: true });
      log(`upgrade to ${m.to} confirmed`);
      return 0;
    }
    if (Date.now() > Date.parse(m.deadline)) {
      fs.rmSync(FAILED, { recursive: true, force: true });
      fs.renameSync(CURRENT, FAILED);
      fs.renameSync(OLD, CURRENT);
      fsyncPath(HOME);
      const reason = `${m.to} did not connect by ${m.deadline}: rolled back to ${m.from}`;
      writeMarker({ ...m, state: 'rolled-back', reason });
      // The new agent, if it runs at all, stops cleanly; its service starts the old code again.
      for (const pid of runningAgents()) process.kill(pid, 'SIGTERM');
      log(reason);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
