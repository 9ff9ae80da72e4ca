// The agent's device stack alone, side by side in one guest (`npm run bench -- --agent-stack`):
// 64 KiB O_DSYNC writes to a raw disk, to one under snapshot-origin alone, and to two under the
// stack the agent builds (era over snapshot-origin, 64 KiB era blocks), one with the change log
// in RAM (as the agent keeps it) and one with it on the machine's system disk (as before,
// era-log.ts). No agent, no transfer, no point: what the kernel's device-mapper costs a write,
// which KVM would not take away. Rounds rotate the order of the four and write fresh blocks each
// (a block's first write in an era is the one that costs), so the host's load falls on all alike.
import fs from 'node:fs';
import path from 'node:path';
import { logBytes } from '../agent/tracking/era-log';
import { ERA_BLOCK_BYTES } from '../agent/tracking/stack';
import { startAgentGuest } from '../test/helpers/agent-guest';
import { MiB, projectRoot, tempDir, type Cleanup } from './harness';
import {
  factsMarkdown,
  machineFacts,
  markdownTable,
  textTable,
  writeBenchmarksFile,
  type Row,
} from './report';
import { percentile } from './rpo';

export const AGENT_STACK_SECTION = {
  start:
    '<!-- bench:agent-stack:start (written by `npm run bench -- --agent-stack`; edit outside the markers) -->',
  end: '<!-- bench:agent-stack:end -->',
};

const ROUNDS = Number(process.env.OSR_BENCH_STACK_ROUNDS ?? 4);
const WRITES = Number(process.env.OSR_BENCH_STACK_WRITES ?? 200);

/** In the guest: `WRITES` writes from block `start` of a device, each timed; one JSON line. */
const WRITER = String.raw`
const fs = require('fs');
const [device, start, count] = process.argv.slice(2).map((a, i) => (i ? Number(a) : a));
const fd = fs.openSync(device, fs.constants.O_WRONLY | fs.constants.O_DSYNC);
const block = Buffer.alloc(${ERA_BLOCK_BYTES}, 0x5a);
const ms = [];
for (let i = 0; i < count; i++) {
  block.writeUInt32LE(i, 0);
  const t = process.hrtime.bigint();
  fs.writeSync(fd, block, 0, block.length, (start + i) * block.length);
  ms.push(Number(process.hrtime.bigint() - t) / 1e6);
}
console.log(JSON.stringify(ms));
`;

type Side = 'raw' | 'origin' | 'ram' | 'disk';
const DEVICES: Record<Side, string> = {
  raw: '/dev/vdb',
  origin: '/dev/mapper/osr-vde-origin',
  ram: '/dev/mapper/osr-vdc',
  disk: '/dev/mapper/osr-vdd',
};

/** The stacks, as the agent builds them (stack.ts), by util-linux and dmsetup by full path (busybox's sh runs its own applets first). */
function setupScript(bytes: number): string {
  const stack = (disk: string, log: string) => `
head -c ${bytes} /dev/zero > ${log}; sync
S=$(/usr/sbin/blockdev --getsz /dev/${disk})
/usr/sbin/dmsetup create osr-${disk}-origin --table "0 $S snapshot-origin /dev/${disk}"
/usr/sbin/dmsetup mknodes osr-${disk}-origin
L=$(/usr/sbin/losetup --find --show ${log})
/usr/sbin/dmsetup create osr-${disk} --table "0 $S era $L /dev/mapper/osr-${disk}-origin ${ERA_BLOCK_BYTES / 512}"
/usr/sbin/dmsetup mknodes osr-${disk}`;
  return [
    'set -e',
    'mkdir -p /run/osr-agent /var/lib/osr-agent',
    'mount -t tmpfs -o mode=0700 osr-agent-log /run/osr-agent',
    stack('vdc', '/run/osr-agent/vdc.era'),
    stack('vdd', '/var/lib/osr-agent/vdd.era'),
    // snapshot-origin alone (no era): the stack's other layer, a pass-through until a point.
    'S=$(/usr/sbin/blockdev --getsz /dev/vde)',
    '/usr/sbin/dmsetup create osr-vde-origin --table "0 $S snapshot-origin /dev/vde"',
    '/usr/sbin/dmsetup mknodes osr-vde-origin',
    'chmod +x /tmp/node',
  ].join('\n');
}

const stats = (ms: number[]) => ({
  mean: ms.reduce((a, b) => a + b, 0) / ms.length,
  p50: percentile(ms, 0.5),
  p99: percentile(ms, 0.99),
});

export async function runAgentStackBench(cleanup: Cleanup, say: (msg: string) => void): Promise<void> {
  const begin = performance.now();
  const facts = await machineFacts(path.join(projectRoot, '.osr', 'bin', 'temporal'));
  const diskBytes = Math.ceil((ROUNDS * WRITES * ERA_BLOCK_BYTES) / MiB) * MiB + 8 * MiB;
  say(`booting the agent guest (a system disk holds /var/lib; 4 disks of ${diskBytes / MiB} MiB)`);
  const guest = await startAgentGuest({
    hostname: 'stack',
    diskSizes: [8 * MiB, diskBytes, diskBytes, diskBytes, diskBytes],
    systemDiskBytes: 256 * MiB,
    bootTimeoutMs: 300_000,
  });
  cleanup.add('stop the agent guest', () => guest.stop());
  const sh = async (command: string): Promise<string> => {
    const r = await guest.ssh(command, 900_000);
    if (r.code !== 0) throw new Error(`in the guest: ${command.slice(0, 80)}… exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const work = tempDir(cleanup, 'osr-bench-stack-');
  fs.writeFileSync(path.join(work, 'writer.js'), WRITER);
  say('copying node and the writer into the guest');
  await guest.put(process.execPath, '/tmp/node');
  await guest.put(path.join(work, 'writer.js'), '/tmp/writer.js');
  await sh(setupScript(logBytes(diskBytes, ERA_BLOCK_BYTES)));

  const sides: Side[] = ['raw', 'origin', 'ram', 'disk'];
  const all: Record<Side, number[]> = { raw: [], origin: [], ram: [], disk: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = sides.map((_, i) => sides[(i + round) % sides.length] as Side);
    for (const side of order) {
      const ms = JSON.parse(
        await sh(`/tmp/node /tmp/writer.js ${DEVICES[side]} ${round * WRITES} ${WRITES}`),
      );
      all[side].push(...(ms as number[]));
      say(`round ${round + 1}/${ROUNDS} ${side}: mean ${stats(ms as number[]).mean.toFixed(2)} ms`);
    }
  }
  const raw = stats(all.raw);
  const ram = stats(all.ram);
  const disk = stats(all.disk);
  const origin = stats(all.origin);
  const f = (x: number) => `${x.toFixed(2)} ms`;
  const rows: Row[] = [
    { measure: 'raw disk, mean (p50, p99)', osr: f(raw.mean), reference: `${f(raw.p50)}, ${f(raw.p99)}` },
    {
      measure: 'snapshot-origin alone (no era), mean',
      osr: f(origin.mean),
      reference: `${f(raw.mean)} raw`,
      ratio: origin.mean / raw.mean,
    },
    {
      measure: 'stack, log in RAM (the agent now), mean',
      osr: f(ram.mean),
      reference: `${f(raw.mean)} raw`,
      ratio: ram.mean / raw.mean,
    },
    { measure: 'stack, log in RAM: p50, p99', osr: `${f(ram.p50)}, ${f(ram.p99)}`, reference: '—' },
    {
      measure: 'stack, log on the system disk (before), mean',
      osr: f(disk.mean),
      reference: `${f(raw.mean)} raw`,
      ratio: disk.mean / raw.mean,
    },
    { measure: 'stack, log on disk: p50, p99', osr: `${f(disk.p50)}, ${f(disk.p99)}`, reference: '—' },
    {
      measure: 'log in RAM against log on disk, mean',
      osr: f(ram.mean),
      reference: f(disk.mean),
      ratio: ram.mean / disk.mean,
    },
  ];
  console.log(`\n${textTable(rows)}\n`);
  const seconds = (performance.now() - begin) / 1000;
  const settings = `agent guest under TCG (1 vCPU, 512 MiB), system disk ext4 on a raw file, data disks qcow2; ${ROUNDS} rounds × ${WRITES} writes of 64 KiB O_DSYNC per side, order rotated, fresh blocks each round`;
  await writeBenchmarksFile(
    path.join(projectRoot, 'BENCHMARKS.md'),
    ['### Results', '', factsMarkdown(facts, seconds, settings), '', markdownTable(rows)].join('\n'),
    AGENT_STACK_SECTION,
  );
  say('results written to BENCHMARKS.md');
}
