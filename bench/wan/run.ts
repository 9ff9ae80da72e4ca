// The WAN benchmark, run inside the recovery site by bench/wan/sites.ts (`npm run bench -- --wan`).
// Recovery site (this namespace): Temporal, Azurite, the control worker and the cloud applier.
// Primary site: the process server and the baselines' senders; the source disks' qemu-storage-daemon
// is reached through unix sockets, which namespaces do not separate. Per link profile, on the same
// data: the link's own rate (raw TCP), plain uploadPages ×8, rclone copy, then OSR's initial sync.
import fs from 'node:fs';
import path from 'node:path';
import { createBlobServiceClient, azuriteConnectionString } from '../../lib/azure/blob-client';
import { inNamespace } from '../../lib/net/netns';
import type { ControlContext } from '../../operations/context';
import { createManualPolicy } from '../manual-protection';
import { startTestMachine, type TestMachine } from '../../test/helpers/qemu-machine';
import { CHURN_WAN_SECTION, measureChurn } from '../churn';
import { CpuMeter, formatCpu, type CpuUse } from '../cpu';
import { allocationPlan, fillDisk } from '../disk-data';
import {
  MiB,
  projectRoot,
  runCommand,
  runMain,
  secondsSince,
  startBenchStack,
  tempDir,
  type Cleanup,
} from '../harness';
import {
  allocatedExtents,
  osrInitialSync,
  rawImage,
  rcloneCopy,
  rcloneUnavailable,
  type CopyResult,
} from '../initial-sync';
import { factsMarkdown, machineFacts, markdownTable, mib, textTable, writeBenchmarksFile } from '../report';
import { countWire, LATENCY_PROFILE, PROFILES, rawTcpRate, sentBytes, shapeLink, steadyRate } from './link';
import {
  dataSetLine,
  limitedRow,
  type LimitedSync,
  profileMarkdown,
  profileRows,
  WAN_SECTION,
  type OnLink,
  type ProfileResult,
} from './report';
import { sitesFromEnv, type WanSites } from './sites';
import { startToxiproxy, toxiproxyUnavailable } from './toxiproxy';

/** OSR_BENCH_WAN_DISK_MIB: the disk's size (default 256 MiB, half of it allocated: minutes per run). */
const DISK_BYTES = Number(process.env.OSR_BENCH_WAN_DISK_MIB ?? 256) * MiB;
const TCP_SECONDS = 5;
const QUICK = process.env.OSR_BENCH_QUICK === '1';

const begin = performance.now();
const say = (msg: string): void => console.log(`[${secondsSince(begin).toFixed(0).padStart(4)} s] ${msg}`);

async function main(cleanup: Cleanup): Promise<void> {
  const sites = sitesFromEnv();
  const primary = inNamespace(sites.primary.ns);
  const temporalBinary = process.env.OSR_TEMPORAL_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'temporal');
  const facts = await machineFacts(temporalBinary);
  const work = tempDir(cleanup, 'osr-wan-bench-');
  const stack = await startBenchStack(cleanup, work, {
    listenHost: '0.0.0.0',
    processServerSite: { prefix: primary, serversAt: sites.recovery.address },
  });
  const { ctx } = stack;
  const account = createBlobServiceClient(stack.config);
  say(
    `stack up: Temporal, Azurite, control and applier in ${sites.recovery.ns}; process server in ${sites.primary.ns}`,
  );
  if (process.argv.includes('--churn')) {
    // Churn alone, on the 1 Gbit/s link: the process server's traffic crosses it.
    const gigabit = PROFILES[1] as (typeof PROFILES)[number];
    await shapeLink(sites, gigabit);
    const where = `Two sites joined by a ${gigabit.name} veth link (tbf): process server in the primary site, Temporal, Azurite, control and applier in the recovery site`;
    return measureChurn(cleanup, stack, where, CHURN_WAN_SECTION, say, () => sentBytes(sites.primary));
  }
  const meter = new CpuMeter();
  meter.track('bench (+ senders, rclone)', process.pid);
  for (const [name, pid] of Object.entries(stack.pids)) meter.track(name, pid);
  const cpu = (use: CpuUse) => formatCpu(use, facts.cores);
  const p = stack.config.pipeline;
  const settings = `pipeline.threads ${p.threads}, pipeline.uploadConcurrency ${p.uploadConcurrency}, pipeline.maxBytesInFlight ${mib(p.maxBytesInFlight)}, zstd level 1`;
  await createManualPolicy(ctx, 'bench-manual');

  // One machine per profile, filled alike (the fill is deterministic), so each sync starts from scratch.
  const toxiproxyMissing = toxiproxyUnavailable();
  if (toxiproxyMissing) say(`added-latency profile skipped: ${toxiproxyMissing}`);
  const profiles = toxiproxyMissing ? PROFILES : [...PROFILES, LATENCY_PROFILE];
  const plan = allocationPlan(DISK_BYTES, 0.5, 1);
  const vms: TestMachine[] = [];
  for (const profile of [...profiles, LIMITED]) {
    const vm = await startTestMachine({ sizes: [DISK_BYTES] });
    cleanup.add(`stop the test machine for ${profile.name}`, () => vm.stop());
    meter.track(`qemu-storage-daemon ${vms.length + 1}`, vm.daemon.pid);
    await fillDisk(await vm.disk(), plan, 0.04, 2);
    vms.push(vm);
  }
  await warmUp(cleanup, ctx);
  say('control plane warmed up: one small machine protected first');
  const first = vms[0] as TestMachine;
  const extents = await allocatedExtents(first.daemon.nbdSocket, 'disk0');
  const allocated = extents.reduce((a, e) => a + e.length, 0);
  say(dataSetLine(DISK_BYTES, allocated, extents.length));
  const rawFile = path.join(work, 'disk0.raw');
  await rawImage(cleanup, first.daemon.nbdSocket, 'disk0', rawFile);
  const extentsFile = path.join(work, 'extents.json');
  fs.writeFileSync(extentsFile, JSON.stringify(extents));
  const rcloneMissing = rcloneUnavailable();
  if (rcloneMissing) say(`rclone baseline skipped: ${rcloneMissing}`);

  const onLink = async <T extends CopyResult>(fn: () => Promise<T>): Promise<OnLink<T>> => {
    const { result, cpu: used } = await meter.measure(() => countWire(sites, fn));
    say(`  ${result.result.method}: ${result.result.seconds.toFixed(1)} s, ${mib(result.wire)} on the link`);
    return { ...result, cpu: used };
  };
  const tool = path.join(__dirname, 'site-tool.js');
  const results: ProfileResult[] = [];
  let limited: LimitedSync | undefined;
  for (const [i, profile] of profiles.entries()) {
    await shapeLink(sites, profile);
    // With added latency every sender in the primary site goes through toxiproxy there: the
    // recovery site's ports at 127.0.0.1, delayed half the round trip each way.
    let host = sites.recovery.address;
    let route: ((port: number) => Promise<string>) | undefined;
    if (profile.rttMs) {
      const toxiproxy = await startToxiproxy(cleanup, sites, stack.logs);
      const oneWay = profile.rttMs / 2;
      for (const port of [stack.temporalPort, stack.azuritePort]) await toxiproxy.delay(port, oneWay);
      route = async (port) => (await toxiproxy.delay(port, oneWay), '127.0.0.1');
      host = '127.0.0.1';
      meter.track('process-server', await stack.restartProcessServer(host));
    }
    const link = await rawTcpRate(cleanup, sites, TCP_SECONDS, route);
    say(`${profile.name}: raw TCP ${((link.payloadBytesPerSecond * 8) / 1e6).toFixed(0)} Mbit/s of payload`);
    const storage = azuriteConnectionString(stack.azuritePort, host);
    const pages = await onLink(async () => {
      const args = [
        'upload-pages',
        storage,
        rawFile,
        extentsFile,
        String(DISK_BYTES),
        String(p.uploadConcurrency),
      ];
      const [command, ...prefix] = [...primary, process.execPath, tool];
      const { stdout } = await runCommand(cleanup, command as string, [...prefix, ...args]);
      return JSON.parse(stdout) as CopyResult;
    });
    const rclone = rcloneMissing
      ? undefined
      : await onLink(() => rcloneCopy(cleanup, account, rawFile, work, { prefix: primary, host }));
    const vm = vms[i] as TestMachine;
    const osr = await onLink(() =>
      osrInitialSync(ctx, {
        name: `wan${i + 1}`,
        qmpSocket: vm.daemon.qmpSocket,
        nbdSocket: vm.daemon.nbdSocket,
        policy: 'bench-manual',
      }),
    );
    results.push({ profile, link, pages, rclone, osr });
    // On the first (100 Mbit/s) link: the same sync under a policy limited to half of it.
    if (i === 0) limited = await limitedSync(ctx, vms[vms.length - 1] as TestMachine, sites);
  }

  const rows = results.flatMap((r) => profileRows(r, allocated, rcloneMissing));
  if (limited) rows.splice(4, 0, limitedRow(limited));
  console.log(`\n${textTable(rows)}\n`);
  const details = results.map((r) => profileMarkdown(r, allocated, rcloneMissing, cpu)).join('\n\n');
  if (QUICK) return void console.log(details);
  const file = await writeBenchmarksFile(
    process.env.OSR_BENCH_OUT ?? path.join(projectRoot, 'BENCHMARKS.md'),
    [
      '### Results across the link',
      '',
      factsMarkdown(facts, secondsSince(begin), settings),
      `- ${dataSetLine(DISK_BYTES, allocated, extents.length)}`,
      '',
      markdownTable(rows),
      '',
      details,
    ].join('\n'),
    WAN_SECTION,
  );
  say(`results written to ${file}`);
}

/**
 * Protects one small machine before anything is timed, so every profile meets a control plane that
 * has run before. The first protect in a worker's life pays its connection to Temporal and its
 * code's first runs (about 0.35 s here): a cost of starting OSR, not of replicating a machine.
 */
async function warmUp(cleanup: Cleanup, ctx: ControlContext): Promise<void> {
  const bytes = 16 * MiB;
  const vm = await startTestMachine({ sizes: [bytes] });
  cleanup.add('stop the warm-up machine', () => vm.stop());
  await fillDisk(await vm.disk(), allocationPlan(bytes, 0.5, 1), 0.04, 2);
  await osrInitialSync(ctx, {
    name: 'wan-warm-up',
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'bench-manual',
  });
}

/** A policy limited to half the 100 Mbit/s link: the limit is what the link carries meanwhile. */
const LIMITED = { name: 'limited sync', bitsPerSecond: 50e6 };

async function limitedSync(ctx: ControlContext, vm: TestMachine, sites: WanSites): Promise<LimitedSync> {
  await createManualPolicy(ctx, 'bench-limited', {
    bandwidthLimitBitsPerSecond: LIMITED.bitsPerSecond,
  });
  const run = await steadyRate(sites, () =>
    osrInitialSync(ctx, {
      name: 'wan-limited',
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'bench-limited',
    }),
  );
  say(
    `  OSR under a ${LIMITED.bitsPerSecond / 1e6} Mbit/s policy limit: ${(run.bitsPerSecond / 1e6).toFixed(1)} Mbit/s on the link`,
  );
  return {
    limitBitsPerSecond: LIMITED.bitsPerSecond,
    seconds: run.result.seconds,
    wire: run.wire,
    bitsPerSecond: run.bitsPerSecond,
  };
}

runMain(main, say);
