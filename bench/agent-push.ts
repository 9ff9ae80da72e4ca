// `npm run bench:agent-push`: what `osr agent install` spends pushing the agent's node into a
// machine, the way before (SFTP, unchecked) and now (lib/ssh/push.ts: gzip'ed through a command,
// checked by SHA-256, flushed, renamed; the SFTP fallback; a reinstall that finds the same node),
// side by side in one agent test guest (TCG here: the guest's CPU, not the link, is the limit).
// Rounds alternate the ways so that a busy host weighs on each alike; prints the median of each.
import fs from 'node:fs';
import { gzipSync } from 'node:zlib';
import { probeCommand, probeResult, pushVerified, type PushProbe } from '../lib/ssh/push';
import type { SshSession } from '../lib/ssh/session';
import { startAgentGuest } from '../test/helpers/agent-guest';
import { MiB, runMain, secondsSince } from './harness';

const ROUNDS = Number(process.env.OSR_BENCH_PUSH_ROUNDS ?? 3);
const REMOTE = '/opt/osr-agent/node';
const begin = performance.now();
const say = (msg: string): void => console.log(`[${secondsSince(begin).toFixed(0).padStart(4)} s] ${msg}`);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

runMain(async (cleanup) => {
  const guest = await startAgentGuest({ hostname: 'push', diskSizes: [16 * MiB], bootTimeoutMs: 240_000 });
  cleanup.add('stop the guest', () => guest.stop());
  // A session per step: dropbear fails an exec that follows an SFTP channel on the same session.
  const fresh = async <T>(use: (ssh: SshSession) => Promise<T>): Promise<T> => {
    const ssh = await guest.openShell();
    try {
      return await use(ssh);
    } finally {
      ssh.close();
    }
  };
  const probe = (): Promise<PushProbe> =>
    fresh(async (s) => probeResult((await s.run(probeCommand(REMOTE))).stdout));
  const file = { local: process.execPath, remote: REMOTE, mode: 0o755 };
  const ways: Record<string, () => Promise<unknown>> = {
    'SFTP, unchecked (before)': async () => {
      await fresh((s) => s.run(`mkdir -p /opt/osr-agent; rm -f ${REMOTE}`));
      await fresh((s) => s.put([file]));
    },
    'gzip, checked (now)': async () => {
      await fresh((s) => s.run(`rm -f ${REMOTE}`));
      const p = await probe();
      if ((await fresh((s) => pushVerified(s, fresh, file, p))) !== 'gzip') throw new Error('not gzip');
    },
    'SFTP, checked (no gzip there)': async () => {
      await fresh((s) => s.run(`rm -f ${REMOTE}`));
      const p = { ...(await probe()), gzip: false };
      if ((await fresh((s) => pushVerified(s, fresh, file, p))) !== 'sftp') throw new Error('not sftp');
    },
    'reinstall, same node there': async () => {
      const p = await probe();
      if ((await fresh((s) => pushVerified(s, fresh, file, p))) !== 'unchanged') throw new Error('sent');
    },
  };
  const seconds: Record<string, number[]> = {};
  for (let round = 1; round <= ROUNDS; round++)
    for (const [way, push] of Object.entries(ways)) {
      const start = performance.now();
      await push();
      (seconds[way] ??= []).push(secondsSince(start));
      say(`round ${round}: ${way} ${secondsSince(start).toFixed(1)} s`);
    }
  const size = fs.statSync(process.execPath).size;
  const gzipped = gzipSync(fs.readFileSync(process.execPath), { level: 1 }).length;
  console.log(`\nnode: ${(size / MiB).toFixed(1)} MiB, gzip'ed (level 1) ${(gzipped / MiB).toFixed(1)} MiB`);
  for (const [way, xs] of Object.entries(seconds))
    console.log(
      `${way.padEnd(32)} median ${median(xs).toFixed(1)} s  (${xs.map((x) => x.toFixed(1)).join(', ')})`,
    );
}, say);
