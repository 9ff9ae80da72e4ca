// What real machines do to the Mobility agent, with the real parts: the agent test guest under
// QEMU with a system disk (its install, state and logs survive reboots), the agent pushed by `osr
// agent install`, a process-server, control and cloud-applier worker, Temporal and Azurite, and a
// TCP relay on the agent's way to the process server that counts the bytes it sends. Under a
// workload of numbered records: a clean reboot (the next point is a delta), a crash (QEMU
// system_reset on the test's own monitor while a point is sent: tracking untrusted, a resync by
// checksums that sends far less than the disk) and the link cut for a minute (QMP set_link):
// replication resumes by itself, every point holds exactly records 1..k, and `osr alerts` said
// what happened. And the system disk filled under the agent's point store while a second writer
// rewrites blocks: agent-store-low warns first, the point is given up with the fix
// (agent-store-full), no write fails, and the next point after the space is freed holds every
// record; both store alerts then clear.
// Every run takes all of it (CI=true cuts the link for 50 s instead of the minute: the process
// server drops an agent silent for 45 s, so a shorter cut is only a delay); the last test checks
// every point and that the history replays. `npm run test:agent-resilience` runs this file alone.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import { ControlContext } from '../../operations/context';
import { listAlerts, type OsrAlert } from '../../operations/alerts';
import { listPoints } from '../../operations/machines';
import type { FrozenPoint, RecoveryPoint } from '../../shared/replication-types';
import { freePort } from '../../lib/process/ports';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { installAgent, startAgentWorkers } from '../helpers/agent-fixture';
import { recordsOf as recordsOfPoint, rewriteLoop } from '../helpers/agent-records';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import { cliFor } from '../helpers/cli';
import { pendingWork, whenPending } from '../helpers/pending-work';
import { pollFor } from '../helpers/poll';
import { recordedFreezes } from '../helpers/protection';
import { assertReplays } from '../helpers/replay';
import { eraLogFile } from '../helpers/era-log';
import { freeIn, StoreAlertWatch, waitResumed } from '../helpers/agent-alerts';
import { untilHealthAttribute } from '../helpers/health-attribute';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const DATA_DISK = 24 * MiB;
/** Record n is written at sector BASE + n of the data disk. */
const BASE = 2048;
const CI = process.env.CI === 'true';
const CUT_MS = CI ? 50_000 : 60_000;
let stack: TestStack;
let guest: AgentGuest;
let ctx: ControlContext;
let relay: { server: net.Server; sent: number };
let agentId: string;
const osr = cliFor(() => stack.env);

async function sh(command: string, timeoutMs?: number): Promise<string> {
  const r = await guest.ssh(command, timeoutMs);
  assert.equal(r.code, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

const points = (): Promise<RecoveryPoint[]> => listPoints(ctx, 'web');

function pointAfter(iso: string, what: string, timeoutMs = 420_000): Promise<RecoveryPoint> {
  return pollFor(async () => (await points()).find((p) => p.instant > iso), {
    timeoutMs,
    intervalMs: 1000,
    failure: (last) => new Error(`no point ${what} within ${timeoutMs / 1000} s (${String(last)})`),
  }).catch(async (err: Error) => {
    const why = `${err.message}; waiting on: ${await pendingWork(await ctx.client(), 'protect/web')}`;
    const status = (await osr(['status', 'web', '--json'])).stdout.slice(0, 3000);
    const agent = await guest.ssh('tail -n 30 /var/log/osr-agent.log; dmsetup info -c').catch(() => null);
    throw new Error(`${why}; status: ${status}\n${agent?.stdout ?? ''}`);
  });
}

const recordsOf = (point: RecoveryPoint): Promise<number> => recordsOfPoint(ctx, point, BASE, 'vda');
/** The machine's alerts as `osr alerts` lists them. */
const machineAlerts = async (): Promise<OsrAlert[]> =>
  (await listAlerts(ctx)).alerts.filter((a) => a.machine === 'web');
const resumedAlert = (what: RegExp, since: string) => waitResumed(machineAlerts, what, since);
const freezes = (): Promise<FrozenPoint[]> => recordedFreezes(ctx, 'protect/web');

// Records written with fsync to the tracked device; the counter lives on the system disk.
const WORKLOAD = `cd /var/lib/osr-test; n=$(cat acked 2>/dev/null || echo 0); rm -f stop stopped
while [ ! -e stop ]; do
  n=$((n + 1))
  if [ -b /dev/mapper/osr-vda ] && printf 'OSR-RECORD %010d agent\\n' $n | dd of=/dev/mapper/osr-vda bs=512 seek=$((${BASE} + n)) count=1 conv=sync,fsync 2>/dev/null
  then echo $n > acked.new && mv acked.new acked
  else n=$((n - 1)); sleep 1
  fi
done
touch stopped`;

const acked = async (): Promise<number> => Number((await sh('cat /var/lib/osr-test/acked')).trim());

/** Waits until the agent's service rebuilt the stack after a boot (before OSR asks for anything). */
async function stackBack(): Promise<void> {
  await pollFor(
    async () => ((await guest.ssh('test -b /dev/mapper/osr-vda')).code === 0 ? true : undefined),
    {
      timeoutMs: 180_000,
      intervalMs: 1000,
      failure: () => new Error('no /dev/mapper/osr-vda within 180 s of the boot'),
    },
  ).catch(async (err: Error) => {
    const seen = await guest
      .ssh('ls -la /opt/osr-agent /etc/init.d /var/lib/osr-agent; tail -n 30 /var/log/osr-agent.log')
      .catch(() => undefined);
    throw new Error(`${err.message}:\n${seen?.stdout ?? ''}${seen?.stderr ?? ''}`);
  });
  assert.equal(await eraLogFile(sh, 'vda'), '/run/osr-agent/vda.era', 'built at boot, its log is in RAM');
}

/** Starts the workload from the newest record on the disk (a crash may have lost the counter file). */
async function startWorkload(): Promise<number> {
  const newest = (
    await sh(
      `test -b /dev/mapper/osr-vda && dd if=/dev/mapper/osr-vda bs=512 skip=${BASE} count=16384 2>/dev/null | grep -a -o 'OSR-RECORD [0-9]*' | tail -n1`,
    )
  ).trim();
  const n = newest ? Number(newest.split(' ')[1]) : 0;
  await sh(
    `mkdir -p /var/lib/osr-test && echo ${n} >/var/lib/osr-test/acked && cat >/var/lib/osr-test/workload.sh <<'EOF'\n${WORKLOAD}\nEOF\nsetsid sh /var/lib/osr-test/workload.sh </dev/null >/dev/null 2>&1 &`,
  );
  await pollFor(async () => ((await acked()) >= n + 3 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 1000,
    failure: () => new Error('the workload acknowledged no record within 60 s'),
  });
  return n;
}

async function qmp(command: string, args?: Record<string, unknown>): Promise<void> {
  const client = await QmpClient.connect(guest.qmpSocket as string);
  await client.execute(command, args).finally(() => client.close());
}

before(async () => {
  const agentPort = await freePort();
  const relayPort = await freePort();
  // The agent's way to the process server: every byte the agent sends is counted here.
  relay = { server: net.createServer(), sent: 0 };
  relay.server.on('connection', (inbound) => {
    const outbound = net.connect(agentPort, '127.0.0.1');
    inbound.on('data', (d: Buffer) => (relay.sent += d.length));
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => relay.server.listen(relayPort, '127.0.0.1', resolve));
  [stack, guest] = await Promise.all([
    startTestStack(),
    startAgentGuest({
      hostname: 'web-1',
      diskSizes: [DATA_DISK],
      systemDiskBytes: 512 * MiB,
      bootTimeoutMs: 240_000,
    }),
  ]);
  ctx = new ControlContext(stack.config);
  await startAgentWorkers(stack, agentPort, relayPort);
  agentId = await installAgent(osr, guest);
  const policy = await osr(['policy', 'create', 'agent', '--crash-every', '10s', '--app-every', '0']);
  assert.equal(policy.code, 0, policy.stderr);
  await sh(`dd if=/dev/urandom of=/dev/vda bs=1M count=${DATA_DISK / MiB} conv=fsync 2>/dev/null`, 120_000);
  const r = await osr(['protect', 'web', '--agent', agentId, '--disks', 'vda', '--policy', 'agent']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  await pointAfter('', 'after the initial sync');
  await startWorkload();
});

after(async () => {
  await guest?.stop();
  await stack?.stop();
  relay?.server.close();
});

test('a clean reboot keeps the change log: the stack is back at boot and the next point is a delta', async (t: TestContext) => {
  const ackedBefore = await acked();
  const rebootAt = new Date().toISOString();
  const boots = guest.boots();
  await guest.ssh('reboot').catch(() => undefined); // the session may end with the machine
  await guest.waitForBoot(boots + 1);
  const bootedAt = new Date().toISOString();
  // The service started at boot rebuilt the stack over the kept log, before anyone asked.
  await stackBack();
  assert.doesNotMatch(await sh('cat /var/lib/osr-agent/tracking.json'), /untrusted/);
  const fromDisk = await startWorkload();
  assert.ok(
    fromDisk >= ackedBefore,
    `records on the disk after the reboot ${fromDisk} < acknowledged ${ackedBefore}`,
  );
  const point = await pointAfter(bootedAt, 'after the reboot');
  const first = (await freezes()).find((f) => f.instant > bootedAt);
  assert.equal(first?.disks[0]?.mode, 'delta', `first freeze after the reboot: ${JSON.stringify(first)}`);
  assert.ok((await recordsOf(point)) >= fromDisk);
  const resumed = await resumedAlert(/web: replication of web resumed .*did not answer/, rebootAt);
  assert.doesNotMatch(resumed.message, /resynchronized/);
  t.diagnostic(`reboot → next point ${Date.parse(point.instant) - Date.parse(rebootAt)} ms`);
});

test('a crash makes tracking untrusted: the agent says so and a resync by checksums sends little', async (t: TestContext) => {
  const ackedBefore = await acked();
  const crashAt = new Date().toISOString();
  const sentBefore = relay.sent;
  const boots = guest.boots();
  await whenPending(await ctx.client(), 'protect/web', 'transferDisk'); // the crash hits a point being sent
  await qmp('system_reset');
  await guest.waitForBoot(boots + 1);
  const bootedAt = new Date().toISOString();
  await stackBack();
  // Built at boot over a new log, marked untrusted until a point ships.
  assert.match(
    await sh('cat /var/lib/osr-agent/tracking.json'),
    /"untrusted": "the change log of vda was lost/,
  );
  const fromDisk = await startWorkload();
  assert.ok(
    fromDisk >= ackedBefore,
    `records on the disk after the crash ${fromDisk} < acknowledged ${ackedBefore}`,
  );
  const point = await pointAfter(bootedAt, 'after the crash');
  const sent = relay.sent - sentBefore;
  const first = (await freezes()).find((f) => f.instant > bootedAt);
  assert.equal(first?.disks[0]?.mode, 'resync', `first freeze after the crash: ${JSON.stringify(first)}`);
  assert.ok((await recordsOf(point)) >= fromDisk);
  await resumedAlert(
    /web: replication of web resumed .*vda resynchronized by checksums \(tracking lost on vda of machine web \(the change log of vda was lost/,
    crashAt,
  );
  assert.ok(sent < DATA_DISK / 8, `the agent sent ${sent} bytes for the resync of a ${DATA_DISK}-byte disk`);
  t.diagnostic(
    `resync: the agent sent ${sent} bytes (disk ${DATA_DISK}); crash → point ${Date.parse(point.instant) - Date.parse(crashAt)} ms`,
  );
});

test('the link cut for a minute: alerts say unreachable, then resumed; replication goes on by itself', async (t: TestContext) => {
  await qmp('set_link', { name: guest.netdev, up: false });
  const cutAt = Date.now();
  let sawUnreachable: OsrAlert | undefined;
  try {
    sawUnreachable = await pollFor(
      async () => (await machineAlerts()).find((a) => a.kind === 'source-unreachable'),
      {
        timeoutMs: CUT_MS,
        intervalMs: 2000,
        failure: () => new Error('no source-unreachable alert during the cut'),
      },
    ).catch(() => undefined);
    const left = CUT_MS - (Date.now() - cutAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left)); // the cut itself, not a wait for an event
  } finally {
    await qmp('set_link', { name: guest.netdev, up: true });
  }
  const restoredAt = new Date().toISOString();
  const restoredMs = Date.now();
  assert.match(
    sawUnreachable?.message ?? '',
    /web: the source of web does not answer: .*agent ag-[0-9a-f]{12}/,
  );
  const point = await pointAfter(restoredAt, 'after the link came back');
  const seenMs = Date.now() - restoredMs;
  t.diagnostic(
    `link restored → next point frozen ${Date.parse(point.instant) - restoredMs} ms, seen ${seenMs} ms`,
  );
  await resumedAlert(/web: replication of web resumed .*did not answer/, restoredAt);
});

test("the point store's filesystem fills up: a warning first, the cycle fails naming the fix, no write fails, replication resumes and the alerts clear once space is back", async (t: TestContext) => {
  const since = new Date().toISOString();
  t.after(() => guest.ssh('rm -f /var/lib/osr-filler; touch /tmp/burst-stop')); // whatever failed
  const store = new StoreAlertWatch(machineAlerts);
  assert.deepEqual(await store.current(), [], 'the system disk has room: no store alert yet');
  // The system disk (under /var/lib/osr-agent) filled, as by any other file, then 6 MiB freed.
  await sh(
    'dd if=/dev/zero of=/var/lib/osr-filler bs=1M 2>/dev/null; set -- $(wc -c </var/lib/osr-filler); truncate -s $(($1 - 6291456)) /var/lib/osr-filler && sync',
    180_000,
  );
  // The early warning (raised during the fill), its figure down to at most the 6 MiB the test
  // left (point stores take from them) within a heartbeat, with the threshold and the fix.
  const low = await store.waitFor('agent-store-low', 'at ≤ 6 MiB free', (a) => freeIn(a) <= 6 * MiB);
  assert.equal(low.severity, 'warning');
  // The workflow counts it from its next freeze on, so the OsrHealth search attribute warns too.
  await untilHealthAttribute(await ctx.client(), 'web', 'warning', { kind: 'agent-store-low' });
  const lowText = `agent ${agentId} on web-1: the filesystem holding /var/lib/osr-agent has .* free of .*alert under .*Fix: free space on the filesystem holding /var/lib/osr-agent on web-1, or grow it`;
  assert.match(low.message, new RegExp(`^web: ${lowText}`));
  assert.match(
    (await osr(['agent', 'show', agentId])).stdout,
    new RegExp(`warning agent-store-low: ${lowText}`),
  );
  // A second writer rewrites the top 8 MiB of the data disk (above every record) without pause.
  await sh(
    `cat >/tmp/burst.sh <<'EOF'\n${rewriteLoop('vda', 16, 8)}\nEOF\nsetsid sh /tmp/burst.sh </dev/null >/dev/null 2>&1 &`,
  );
  const passes = async (): Promise<number> => Number((await sh('wc -l </tmp/burst-passes')).trim());
  const full = await pollFor(
    async () =>
      (await machineAlerts()).find(
        (a) => a.kind === 'cycle-failed' && (a.lastAt ?? a.at) > since && /was invalidated/.test(a.message),
      ),
    {
      timeoutMs: 180_000,
      intervalMs: 1000,
      failure: () => new Error('no cycle failed on the full point store within 180 s'),
    },
  ).catch(async (err: Error) => {
    const seen = await guest.ssh('dmsetup status; df /var/lib/osr-agent; tail -n 20 /var/log/osr-agent.log');
    throw new Error(`${err.message}: ${JSON.stringify(await machineAlerts())}\n${seen.stdout}`);
  });
  assert.match(
    full.message,
    /web: cycle (\d+) failed, changes kept for the next cycle: .*given up by its agent: the snapshot of vda for point web-c\1 was invalidated .*the filesystem holding \/var\/lib\/osr-agent is full .*Fix: free space on the filesystem holding \/var\/lib\/osr-agent/,
  );
  const failedCycle = Number(/cycle (\d+) failed/.exec(full.message)?.[1]);
  // The overflow named as its own alert, beside the failed cycle (later cycles may overflow too).
  const overflow = await store.waitFor('agent-store-full', 'naming the failed cycle', (a) => {
    return Number(/point web-c(\d+) was invalidated/.exec(a.message)?.[1]) >= failedCycle;
  });
  assert.equal(overflow.severity, 'critical');
  assert.match(overflow.message, /given up since .*Fix: free space on the filesystem holding \/var\/lib\//);
  // A whole 8 MiB pass (> the 6 MiB left) ends before space is back: writes went on past the full store.
  const waitPass = { timeoutMs: 180_000, intervalMs: 1000, failure: () => new Error('no pass ended') };
  await pollFor(async () => (await passes()) > 0 || undefined, waitPass);
  await sh('rm -f /var/lib/osr-filler');
  const freedAt = new Date().toISOString();
  const ackedAtFree = await acked();
  const point = await pointAfter(freedAt, 'after space came back', 240_000);
  await sh('touch /tmp/burst-stop'); // its last pass ends on its own
  // No point of the invalidated snapshot; the next one is a delta (the failed point's changes were
  // carried, not rebuilt by checksums) holding every record acknowledged before space came back.
  assert.equal((await points()).filter((p) => p.id.endsWith(`-c${failedCycle}`)).length, 0);
  const first = (await freezes()).find((f) => f.instant > freedAt);
  assert.equal(
    first?.disks[0]?.mode,
    'delta',
    `first freeze after space came back: ${JSON.stringify(first)}`,
  );
  const k = await recordsOf(point);
  assert.ok(k >= ackedAtFree, `point ${point.id}: ${k} records, ${ackedAtFree} acknowledged before it`);
  // The machine's writes never failed, and went on while the store was full: the snapshot gave way.
  assert.equal((await guest.ssh('cat /tmp/burst-failed')).stdout, '', 'writes to the machine failed');
  await resumedAlert(
    /web: replication of web resumed .*the filesystem holding \/var\/lib\/osr-agent is full/,
    since,
  );
  await store.waitCleared('after room came back and a point was kept'); // by themselves
  await untilHealthAttribute(await ctx.client(), 'web', 'healthy', { timeoutMs: 120_000 });
  t.diagnostic(
    `low: ${low.message}; overflow: ${full.message}; space back → point ${Date.parse(point.instant) - Date.parse(freedAt)} ms; ${await passes()} rewrites of 8 MiB, none failed`,
  );
});

test('after all of it nothing acknowledged is lost: every point holds records 1..k, in order', async () => {
  // Stop the workload; the next point holds every record.
  await sh('touch /var/lib/osr-test/stop');
  await pollFor(
    async () => ((await guest.ssh('test -e /var/lib/osr-test/stopped')).code === 0 ? true : undefined),
    {
      timeoutMs: 60_000,
      intervalMs: 1000,
      failure: () => new Error('the workload did not stop'),
    },
  );
  const total = await acked();
  const last = await pointAfter(new Date().toISOString(), 'after the workload stopped');
  assert.equal(await recordsOf(last), total);
  let previous = 0;
  for (const p of (await points()).sort((a, b) => a.instant.localeCompare(b.instant)).slice(1)) {
    const k = await recordsOf(p);
    assert.ok(
      k >= previous && k <= total,
      `point ${p.id}: ${k} records, previous ${previous}, total ${total}`,
    );
    previous = k;
  }
  const cli = await osr(['alerts', '--json']);
  assert.match(cli.stdout, /replication-resumed/);
  await assertReplays(
    (await ctx.client()).workflow.getHandle('protect/web'),
    'protectMachine-agent-resilience',
  );
});
