// Multi-VM consistency (design invariant 2) with members protected through the Mobility agent:
// two agent test guests under TCG, agents pushed over SSH and enrolled, each data disk protected
// with --agent, one consistency group. The group's write barrier is the agents' hold (their
// tracked disks' top devices suspended in the machine) on the agents' own TLS connections, each
// held by a process server of its own (two on the site: A's and B's), so each hold is made where
// its agent is connected. A
// causal workload (B writes record n only after A acknowledged record n) runs while group points
// are cut: every one must hold B's newest record only with A's. Then B's agent stops answering
// (SIGSTOP): the group point fails naming B, A's writes are let go at once, and once B's agent
// runs again the group cuts again. A paced prober in each guest times its own writes, so how long
// writes were held is counted inside the machines, not taken from OSR.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { HOLD_LIMIT_MS } from '../../agent/protocol';
import * as groups from '../../operations/groups';
import * as machines from '../../operations/machines';
import { freePort } from '../../lib/process/ports';
import type { SshSession } from '../../lib/ssh/session';
import { groupWorkflowId } from '../../shared/group-types';
import { agentListenerQueue } from '../../shared/task-queues';
import { agentListenerEnv, onAgentProcess } from '../helpers/agent-fixture';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import { CausalWorkload, firstCutDone } from '../helpers/causal-workload';
import { cliFor } from '../helpers/cli';
import { scheduledActivities } from '../helpers/history-activities';
import { pollFor } from '../helpers/poll';
import { waitForStatus } from '../helpers/protection';
import { assertReplays } from '../helpers/replay';
import { formatRecord } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const DATA_DISK = 8 * MiB;
const CUTS = 3;
const A = 'agg-a';
const B = 'agg-b';
const GROUP = 'aggroup';
const DEVICE = '/dev/mapper/osr-vdb';
let bed: Testbed;
const guests: Record<string, AgentGuest> = {};
const shells: Record<string, SshSession> = {};
let causal: CausalWorkload;
/** The address each agent dials: the listener of its own process server. */
const listeners: Record<string, string> = {};
let booting: Promise<PromiseSettledResult<void>[]> = Promise.resolve([]);
const osr = cliFor(() => bed.stack.env);

async function sh(machine: string, command: string): Promise<string> {
  const r = await (shells[machine] as SshSession).run(command, 120_000);
  assert.equal(r.code, 0, `${machine}: ${command}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Record n at sector n of the protected disk, through the agent's stack; returns once synced. */
const recordWriter = (machine: string) => ({
  async writeRecord(_disk: number, n: number): Promise<void> {
    await sh(
      machine,
      `printf '%s\\n' '${formatRecord(n)}' | dd of=${DEVICE} bs=512 seek=${n} count=1 conv=fsync,notrunc 2>&1`,
    );
  },
});

// Writes one sector (the disk's last) every 20 ms with O_DSYNC and logs each write that took
// 200 ms or more: "<start ms> <duration ms>". A held disk shows as one long write.
const PROBER = `const fs = require('fs');
const fd = fs.openSync('${DEVICE}', fs.constants.O_WRONLY | fs.constants.O_DSYNC);
const buf = Buffer.alloc(512, 0x50);
const tick = () => {
  const t0 = Date.now();
  fs.writeSync(fd, buf, 0, 512, ${DATA_DISK - 512});
  const d = Date.now() - t0;
  if (d >= 200) fs.appendFileSync('/tmp/stalls', t0 + ' ' + d + '\\n');
  setTimeout(tick, 20);
};
tick();`;

async function stalls(machine: string): Promise<Array<{ at: number; ms: number }>> {
  const text = await sh(machine, 'cat /tmp/stalls 2>/dev/null || true');
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [at, ms] = l.split(' ').map(Number);
      return { at: at ?? 0, ms: ms ?? 0 };
    });
}

const suspended = async (machine: string): Promise<boolean> =>
  (await sh(machine, `dmsetup info -c --noheadings -o attr osr-vdb`)).includes('s');

/** The agent's node process, by its command line. */
const signalAgent = (machine: string, signal: 'STOP' | 'CONT') =>
  sh(machine, onAgentProcess(`kill -${signal}`));

before(async () => {
  const [portA, portB] = [await freePort(), await freePort()];
  listeners[A] = `10.0.2.2:${portA}`;
  listeners[B] = `10.0.2.2:${portB}`;
  // The stack first: two TCG guests booting take both cores, and its workers' start is timed.
  bed = await startTestbed({ processServerEnv: () => agentListenerEnv(portA) });
  await bed.stack.startWorker('process-server', agentListenerEnv(portB));
  // Each guest is kept as soon as it is up, so that after() stops it whatever else failed.
  booting = Promise.allSettled(
    [A, B].map(async (m) => {
      guests[m] = await startAgentGuest({
        hostname: m,
        diskSizes: [8 * MiB, DATA_DISK],
        bootTimeoutMs: 300_000,
      });
    }),
  );
  for (const r of await booting) if (r.status === 'rejected') throw r.reason;
  await Promise.all(
    [A, B].map(async (m) => {
      const g = guests[m] as AgentGuest;
      const installed = await osr([
        ...['agent', 'install', '--ssh', g.sshTarget, '--key', g.keyFile],
        ...['--host-key-fingerprint', g.hostKeyFingerprint, '--server', listeners[m] as string, '--json'],
      ]);
      assert.equal(installed.code, 0, `${installed.stdout}\n${installed.stderr}`);
      const agentId = (JSON.parse(installed.stdout) as { id: string }).id;
      await machines.protect(bed.ctx, { name: m, agentId, disks: ['vdb'], policy: 'manual' });
      shells[m] = await g.openShell();
    }),
  );
  for (const m of [A, B]) await waitForStatus(bed.ctx, m, (s) => s.state === 'protected');
  for (const m of [A, B])
    await sh(
      m,
      `cat > /tmp/prober.js <<'EOF'\n${PROBER}\nEOF\nsetsid /opt/osr-agent/node /tmp/prober.js </dev/null >/tmp/prober.log 2>&1 &`,
    );
  causal = new CausalWorkload(
    bed.ctx,
    { machine: A, vm: recordWriter(A) },
    { machine: B, vm: recordWriter(B) },
    { cuts: CUTS, warmupRecords: 5, diskId: 'vdb' },
  );
});

after(async () => {
  await booting;
  for (const m of [A, B]) await signalAgent(m, 'CONT').catch(() => undefined);
  await Promise.all(Object.values(guests).map((g) => g.stop()));
  await bed?.stop();
});

test('a group of two agent machines: writes held by the agents, every group point a causal cut', async () => {
  const { ctx } = bed;
  const created = await groups.createGroup(ctx, { name: GROUP, machines: [A, B], intervalSeconds: 3600 });
  assert.equal(created.state, 'active');
  const before = (await firstCutDone(ctx, GROUP)).stats.cuts;
  const stallsBefore = { a: (await stalls(A)).length, b: (await stalls(B)).length };

  const { points, first, written } = await causal.cutsUnderLoad(GROUP);
  const seen: Array<{ a: number; b: number }> = [];
  for (const point of points) {
    assert.equal(point.consistent, true);
    assert.deepEqual(point.methods.map((m) => [m.machine, m.method]).sort(), [
      [A, 'agent-hold'],
      [B, 'agent-hold'],
    ]);
    const records = await causal.newestRecords(point);
    seen.push(records);
    assert.ok(
      records.b === records.a || records.b === records.a - 1,
      `group point ${point.id}: B's newest record ${records.b} is not A's ${records.a} or the one before`,
    );
    assert.ok(
      records.a >= first + 5 && records.a <= written,
      `group point ${point.id}: A's newest record ${records.a} is within this run's ${first + 5}..${written}`,
    );
  }
  for (let i = 1; i < seen.length; i++)
    assert.ok((seen[i]?.a ?? 0) >= (seen[i - 1]?.a ?? 0), `cuts in order: ${JSON.stringify(seen)}`);
  assert.ok(new Set(seen.map((r) => r.a)).size > 1, `records moved between cuts: ${JSON.stringify(seen)}`);

  // Each agent was held and released by the process server holding its connection.
  const barrierWork = (await scheduledActivities(bed.stack.client, groupWorkflowId(GROUP))).filter(
    (a) => a.name === 'holdWrites' || a.name === 'releaseWrites',
  );
  for (const m of [A, B]) {
    const on = barrierWork.filter((a) =>
      (a.input as { machines: Array<{ name: string }> }).machines.some((x) => x.name === m),
    );
    assert.ok(on.length >= 2 * (CUTS + 1), `${m}: ${on.length} holds and releases`);
    for (const a of on)
      assert.equal(a.queue, agentListenerQueue(listeners[m] as string), `${m}'s ${a.name} on ${a.queue}`);
  }

  const status = await groups.groupStatus(ctx, GROUP);
  assert.equal(status.stats.cuts, before + CUTS);
  assert.equal(status.stats.failed + status.stats.skipped, 0, JSON.stringify(status.alerts));
  for (const m of [A, B]) assert.equal(await suspended(m), false, `${m}'s writes flow after the cuts`);
  const held = {
    a: (await stalls(A)).slice(stallsBefore.a).map((s) => s.ms),
    b: (await stalls(B)).slice(stallsBefore.b).map((s) => s.ms),
  };
  console.log(
    `# agent write barrier over ${CUTS} cuts (+1 first): OSR says mean ${status.barrier?.mean} ms, max ${status.barrier?.max} ms; ` +
      `writes of 200 ms or more seen in the guests: A ${JSON.stringify(held.a)}, B ${JSON.stringify(held.b)}; newest records per cut ${JSON.stringify(seen)}`,
  );
});

test("a member whose agent does not answer fails the group point naming it; the other's writes go on", async () => {
  const { ctx } = bed;
  const stallsBefore = (await stalls(A)).length;
  assert.match(await signalAgent(B, 'STOP'), /^\d+\s*$/, "B's agent stopped");
  let failure: Error | undefined;
  try {
    await groups.takeGroupPoint(ctx, GROUP).catch((err: Error) => (failure = err));
    assert.ok(failure, 'the group point failed');
    assert.match(
      failure.message,
      /could not hold the members' writes: agg-b: agent ag-[0-9a-f]{12} did not answer hold/,
    );
    // A was held while B was waited for, and let go then: not at its agent's own limit.
    assert.equal(await suspended(A), false, "A's writes flow again");
    await recordWriter(A).writeRecord(0, 9000);
  } finally {
    await signalAgent(B, 'CONT');
  }
  const heldA = (await stalls(A)).slice(stallsBefore).map((s) => s.ms);
  assert.ok(heldA.length > 0, 'A saw its writes held while B was asked');
  assert.ok(
    Math.max(...heldA) < HOLD_LIMIT_MS,
    `A's writes were held ${JSON.stringify(heldA)} ms, under the limit`,
  );
  const status = await groups.groupStatus(ctx, GROUP);
  const alert = status.alerts.find((a) => a.kind === 'cut-failed');
  assert.match(
    alert?.message ?? '',
    /agg-b: agent ag-[0-9a-f]{12} did not answer hold/,
    JSON.stringify(status.alerts),
  );
  console.log(`# A's writes held while B's agent did not answer: ${JSON.stringify(heldA)} ms`);

  // B's agent runs again: the hold it finds queued is cancelled by the release behind it, so its
  // disk is not held for the limit, and the group cuts again.
  await pollFor(async () => ((await suspended(B)) ? undefined : true), {
    timeoutMs: 30_000,
    intervalMs: 500,
    failure: () => new Error("B's disk stayed suspended after its agent ran again"),
  });
  await recordWriter(B).writeRecord(0, 9000);
  const point = await groups.takeGroupPoint(ctx, GROUP);
  assert.equal(point.consistent, true);
  for (const m of [A, B]) assert.equal(await suspended(m), false, `${m}'s writes flow after the cut`);
  await assertReplays(
    (await ctx.client()).workflow.getHandle(groupWorkflowId(GROUP)),
    'consistencyGroup-agent-routed',
  );
  await groups.deleteGroup(ctx, GROUP);
});
