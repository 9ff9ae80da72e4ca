// The Mobility agent's cost inside the machine (`npm run bench -- --agent`): in the agent test
// guest, one paced write workload on the data disk, (a) on the raw disk with the agent installed
// and idle, (b) through /dev/mapper/osr-vdb with tracking and points every 10 s, (c) the same
// with protection paused (the device stack alone); the per-write latency, the agent's CPU and RSS
// from the guest's /proc, and the bytes between the agent and the process server counted at a TCP proxy against the segments stored in osr-cache.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createBlobServiceClient } from '../lib/azure/blob-client';
import { freePort } from '../lib/process/ports';
import { listPoints } from '../operations/machines';
import { startAgentGuest } from '../test/helpers/agent-guest';
import { runCli } from '../test/helpers/cli';
import { pollFor } from '../test/helpers/poll';
import { WORKLOAD_SCRIPT, WRITE_BYTES, type WorkloadResult } from './agent-workload';
import { agentMarkdown, agentRows, AGENT_SECTION } from './agent-report';
import { CpuMeter, formatCpu } from './cpu';
import { MiB, projectRoot, startBenchStack, tempDir, type Cleanup } from './harness';
import { factsMarkdown, machineFacts, textTable, writeBenchmarksFile } from './report';

const RATE = 5_000_000; // bytes per second: the "5 MB/s of change"
const SECONDS = Number(process.env.OSR_BENCH_AGENT_SECONDS ?? 30);
const POINT_EVERY = '10s';

/** A TCP relay that counts the bytes each way: the wire, counted outside OSR. */
async function countingProxy(
  cleanup: Cleanup,
  target: number,
): Promise<{ port: number; bytes: () => number }> {
  let bytes = 0;
  const server = net.createServer((inbound) => {
    const outbound = net.connect(target, '127.0.0.1');
    inbound.on('data', (d: Buffer) => (bytes += d.length));
    outbound.on('data', (d: Buffer) => (bytes += d.length));
    inbound.pipe(outbound).on('error', () => inbound.destroy());
    outbound.pipe(inbound).on('error', () => outbound.destroy());
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanup.add('stop the counting proxy', () => void server.close());
  return { port, bytes: () => bytes };
}

export async function runAgentBench(cleanup: Cleanup, say: (msg: string) => void): Promise<void> {
  const begin = performance.now();
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  const region = Math.ceil((SECONDS * RATE) / WRITE_BYTES) * WRITE_BYTES;
  const diskBytes = Math.ceil((region + 8 * MiB) / MiB) * MiB;
  const agentPort = await freePort();
  const proxy = await countingProxy(cleanup, agentPort);
  say('starting the stack and the agent guest');
  const workDir = tempDir(cleanup, 'osr-bench-agent-');
  const [stack, guest] = await Promise.all([
    startBenchStack(cleanup, workDir, {
      env: {
        OSR_AGENT_HOST: '127.0.0.1',
        OSR_AGENT_PORT: String(agentPort),
        OSR_AGENT_ADDRESS: `10.0.2.2:${proxy.port}`,
      },
    }),
    // Its stop registered as soon as it runs: a stack that fails to start must not leave it behind.
    // A system disk as a real machine has: /opt and /var/lib (the points' copy-on-write stores,
    // the log a clean stop keeps) on ext4 on a disk, not in the guest's RAM.
    startAgentGuest({
      hostname: 'web-1',
      diskSizes: [8 * MiB, diskBytes],
      systemDiskBytes: 1024 * MiB,
      bootTimeoutMs: 300_000,
    }).then((g) => {
      cleanup.add('stop the agent guest', () => g.stop());
      return g;
    }),
  ]);
  const meter = new CpuMeter();
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OSR_CONFIG: path.join(stack.stateDir, 'bench-config.json'),
    OSR_STATE_DIR: stack.stateDir,
    OSR_TEMPORAL_PORT: String(stack.temporalPort),
    OSR_AZURITE_PORT: String(stack.azuritePort),
    OSR_AGENT_PORT: '0',
  };
  delete env.OSR_TEMPORAL_ADDRESS;
  delete env.OSR_STORAGE_CONNECTION_STRING;
  const osr = async (args: string[]): Promise<string> => {
    const r = await runCli(args, env, { timeout: 600_000 });
    if (r.code !== 0) throw new Error(`osr ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const sh = async (command: string, timeoutMs = 300_000): Promise<string> => {
    const r = await guest.ssh(command, timeoutMs);
    if (r.code !== 0) throw new Error(`${command.slice(0, 200)}: ${r.stderr}`);
    return r.stdout;
  };

  say('installing the agent (osr agent install)');
  const installed = await osr([
    ...['agent', 'install', '--ssh', guest.sshTarget, '--key', guest.keyFile],
    ...['--host-key-fingerprint', guest.hostKeyFingerprint, '--json'],
  ]);
  const agentId = (JSON.parse(installed) as { id: string }).id;
  await sh(`cat > /tmp/workload.js <<'EOF'\n${WORKLOAD_SCRIPT}\nEOF`);
  // Both sides write the same blocks; the seed makes (b)'s content new, so all of it is change.
  const workload = async (device: string, seed: number): Promise<WorkloadResult> => {
    const out = await sh(
      `/opt/osr-agent/node /tmp/workload.js ${device} ${SECONDS} ${RATE} ${seed}`,
      600_000,
    );
    return JSON.parse(out.trim().split('\n').pop() as string) as WorkloadResult;
  };

  // The disk's qcow2 clusters allocated first: (a) must not pay for the host file's growth alone.
  await sh(`dd if=/dev/zero of=/dev/vdb bs=1M count=${diskBytes / MiB} oflag=direct 2>/dev/null`);
  say(`(a) ${SECONDS} s of paced writes at ${RATE / 1e6} MB/s on the raw /dev/vdb, the agent idle`);
  const raw = await workload('/dev/vdb', 1);
  say(`    mean ${raw.meanMs.toFixed(2)} ms, p99 ${raw.p99Ms.toFixed(2)} ms, ${raw.late} late`);

  say('protecting vdb through the agent; waiting for the first point (initial sync)');
  await osr(['policy', 'create', 'agent', '--crash-every', POINT_EVERY, '--app-every', '0', '--rpo', '5m']);
  await osr(['protect', 'web', '--agent', agentId, '--disks', 'vdb', '--policy', 'agent']);
  const pointAfter = (instant: string, what: string) =>
    pollFor(async () => (await listPoints(stack.ctx, 'web')).find((p) => p.instant > instant), {
      timeoutMs: 900_000,
      intervalMs: 2000,
      failure: (last) => new Error(`no point ${what} within 900 s (${String(last)})`),
    });
  await pointAfter('', 'after the initial sync');
  const idleFrom = new Date().toISOString();
  await pointAfter(idleFrom, 'while idle'); // the cycle in flight at the first point is done

  // Segments in osr-cache, each counted once at the size first seen (the applier may delete them).
  const cache = createBlobServiceClient(stack.config).getContainerClient('osr-cache');
  const seen = new Map<string, number>();
  const baseline = new Set<string>();
  const listSegments = async (into: (name: string, size: number) => void): Promise<void> => {
    for await (const b of cache.listBlobsFlat({ prefix: 'web/' }))
      if (b.name.endsWith('.seg')) into(b.name, b.properties.contentLength ?? 0);
  };
  await listSegments((name) => baseline.add(name));
  let polling = true;
  const poller = (async () => {
    while (polling) {
      await listSegments((name, size) => {
        if (!baseline.has(name) && !seen.has(name)) seen.set(name, size);
      }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  say(`(b) ${SECONDS} s of the same writes on /dev/mapper/osr-vdb, tracking and points every ${POINT_EVERY}`);
  const wire0 = proxy.bytes();
  const cpu0 = meter.snapshot();
  const cpuStart = performance.now();
  const tracked = await workload('/dev/mapper/osr-vdb', 2);
  const stoppedAt = new Date().toISOString();
  say(`    mean ${tracked.meanMs.toFixed(2)} ms, p99 ${tracked.p99Ms.toFixed(2)} ms, ${tracked.late} late`);
  say('waiting for the point that holds the last write');
  await pointAfter(stoppedAt, 'after the workload');
  const hostCpu = meter.since(cpu0, cpuStart);
  const wire = proxy.bytes() - wire0;
  polling = false;
  await poller;
  await listSegments((name, size) => {
    if (!baseline.has(name) && !seen.has(name)) seen.set(name, size);
  });
  const stored = [...seen.values()].reduce((a, b) => a + b, 0);
  const points = (await listPoints(stack.ctx, 'web')).filter((p) => p.instant > idleFrom).length;

  // (c) the device stack alone: protection paused, nothing to send. The cycle in flight ends and
  // releases its point; one still held after that is measured as held (its row says how much).
  say('(c) protection paused: the same writes through era + snapshot-origin, nothing sent');
  await osr(['pause', 'web']);
  await pollFor(async () => !/osr-vdb-p\d/.test(await sh('dmsetup ls')) || undefined, {
    timeoutMs: 180_000,
    intervalMs: 2000,
    failure: () => new Error('held'),
  }).catch(async () => {
    const seen = await sh('dmsetup ls; tail -5 /var/log/osr-agent.log');
    say(`    a snapshot still held 180 s after pause: ${seen.replace(/\n/g, ' | ')}`);
  });
  const stackOnly = await workload('/dev/mapper/osr-vdb', 3);
  say(
    `    mean ${stackOnly.meanMs.toFixed(2)} ms, p99 ${stackOnly.p99Ms.toFixed(2)} ms, ${stackOnly.late} late`,
  );

  const results = { raw, tracked, stackOnly, wire, stored, changed: region, points, segments: seen.size };
  const rows = agentRows(results);
  console.log(`\n${textTable(rows)}\n`);
  console.log(`host CPU over (b): ${formatCpu(hostCpu, facts.cores)} (qemu, the guest, is "outside")`);
  const seconds = (performance.now() - begin) / 1000;
  const settings = `agent guest under TCG (1 vCPU, 512 MiB, /var/lib on an ext4 system disk), ${SECONDS} s per side at ${RATE / 1e6} MB/s, 64 KiB O_DSYNC writes, points every ${POINT_EVERY}, agents.compression ${stack.config.agents.compression}`;
  const file = await writeBenchmarksFile(
    path.join(projectRoot, 'BENCHMARKS.md'),
    agentMarkdown(results, rows, factsMarkdown(facts, seconds, settings), formatCpu(hostCpu, facts.cores)),
    AGENT_SECTION,
  );
  if (!fs.existsSync(file)) throw new Error(`${file} not written`);
  say(`results written to ${file}`);
}
