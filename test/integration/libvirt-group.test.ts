// Multi-VM consistency (design invariant 2) across two libvirt domains, the causal test of
// consistency-group.test.ts: the test guest runs as two domains of a private libvirtd
// (test/helpers/libvirt-daemon.ts, TCG), protected with --host/--domain, and B writes its record n
// only after A acknowledged its record n. Every group point must hold B's newest record only with
// A's (B at A's record or one behind). The group's write barrier goes through libvirt alone
// (`virsh suspend`/`resume`: libvirtd holds each domain's only monitor), which libvirt's own
// lifecycle events show: one suspend and one resume per domain per cut. Without the barrier the
// same check finds B ahead in every cut: B's `backup-begin` passes a gate in front of virsh that
// holds it until B acknowledged a record A's freeze could not have seen.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as groups from '../../operations/groups';
import { storeHost } from '../../operations/hosts';
import * as machines from '../../operations/machines';
import { virsh } from '../../lib/libvirt/virsh';
import { groupDocs, groupWorkflowId, type ConsistencyGroup, type GroupPoint } from '../../shared/group-types';
import { startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { startLibvirtTestVm, type LibvirtTestVm } from '../helpers/libvirt-vm';
import { CausalWorkload, firstCutDone } from '../helpers/causal-workload';
import { pollFor } from '../helpers/poll';
import { waitForStatus } from '../helpers/protection';
import { assertReplays } from '../helpers/replay';
import { startTestbed, type Testbed } from '../helpers/testbed';
import { startVirshGate, type VirshGate } from '../helpers/virsh-gate';

const MiB = 1024 * 1024;
const CUTS = 4;
const A = 'lvg-a';
const B = 'lvg-b';
let bed: Testbed;
let daemon: LibvirtDaemon;
let gate: VirshGate;
let vmA: LibvirtTestVm;
let vmB: LibvirtTestVm;
let events: ChildProcess | undefined;
/** libvirt's lifecycle events of the domains, as `virsh event` prints them. */
const eventLines: string[] = [];
let causal: CausalWorkload;

before(async () => {
  daemon = await startLibvirtDaemon();
  gate = startVirshGate();
  bed = await startTestbed({
    processServerEnv: async (stack) => {
      const ctx = new ControlContext(stack.config);
      await storeHost(ctx, {
        name: 'lvhost',
        site: stack.config.site,
        connection: { kind: 'libvirt', uri: daemon.uri },
      });
      await ctx.close();
      return { OSR_PROCESS_SERVER_HOSTS: 'lvhost', PATH: `${gate.bin}:${process.env.PATH ?? ''}` };
    },
  });
  [vmA, vmB] = await Promise.all([
    startLibvirtTestVm(daemon, { name: A, disks: [{ sizeBytes: 8 * MiB }] }),
    startLibvirtTestVm(daemon, { name: B, disks: [{ sizeBytes: 8 * MiB }] }),
  ]);
  for (const name of [A, B])
    await machines.protect(bed.ctx, { name, host: 'lvhost', domain: name, policy: 'manual' });
  await waitForStatus(bed.ctx, A, (s) => s.state === 'protected');
  await waitForStatus(bed.ctx, B, (s) => s.state === 'protected');
  causal = new CausalWorkload(
    bed.ctx,
    { machine: A, vm: vmA },
    { machine: B, vm: vmB },
    {
      cuts: CUTS,
      warmupRecords: 10,
      diskId: 'vda',
    },
  );
  // libvirt's own account of what happened to the domains (no --domain: all of them).
  // (Line-buffered: virsh's stdout to a pipe is otherwise flushed only when full.)
  events = spawn('stdbuf', ['-oL', 'virsh', '-c', daemon.uri, 'event', '--loop', '--event', 'lifecycle'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let partial = '';
  events.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    eventLines.push(...lines.filter(Boolean));
  });
});

after(async () => {
  events?.kill();
  await vmA?.remove().catch(() => undefined);
  await vmB?.remove().catch(() => undefined);
  await daemon?.stop();
  await bed?.stop();
  gate?.close();
});

/** libvirt's lifecycle events of a domain so far: `Suspended Paused`, `Resumed Unpaused` … */
function lifecycle(domain: string, kind: 'Suspended' | 'Resumed'): number {
  return eventLines.filter((l) => l.includes(`domain '${domain}'`) && l.includes(`: ${kind} `)).length;
}

test('a group of two libvirt domains: writes held through libvirt, every group point a consistent cut', async () => {
  const { ctx } = bed;
  const created = await groups.createGroup(ctx, {
    name: 'lvcausal',
    machines: [A, B],
    intervalSeconds: 3600,
  });
  assert.equal(created.state, 'active');
  const config = await ctx.vault.read<ConsistencyGroup>(groupDocs.group('lvcausal'));
  assert.equal(config?.value.host, 'lvhost', "the host's process servers hold the writes");
  const before = (await firstCutDone(bed.ctx, 'lvcausal')).stats.cuts;
  const marks = { a: lifecycle(A, 'Suspended'), b: lifecycle(B, 'Suspended') };

  const { points, first, written } = await causal.cutsUnderLoad('lvcausal');
  const seen: Array<{ a: number; b: number }> = [];
  for (const point of points) {
    assert.equal(point.consistent, true);
    assert.deepEqual(point.methods.map((m) => [m.machine, m.method]).sort(), [
      [A, 'libvirt-suspend'],
      [B, 'libvirt-suspend'],
    ]);
    const records = await causal.newestRecords(point);
    seen.push(records);
    assert.ok(
      records.b === records.a || records.b === records.a - 1,
      `group point ${point.id}: B's newest record ${records.b} is not A's ${records.a} or the one before`,
    );
    // Not vacuous: the cut lies inside this run's workload (its first 10 records came before it).
    assert.ok(
      records.a >= first + 10 && records.a <= written,
      `group point ${point.id}: A's newest record ${records.a} is within this run's ${first + 10}..${written}`,
    );
  }
  for (let i = 1; i < seen.length; i++)
    assert.ok((seen[i]?.a ?? 0) >= (seen[i - 1]?.a ?? 0), `cuts in order: ${JSON.stringify(seen)}`);
  assert.ok(new Set(seen.map((r) => r.a)).size > 1, `records moved between cuts: ${JSON.stringify(seen)}`);

  const status = await groups.groupStatus(ctx, 'lvcausal');
  assert.equal(status.stats.cuts, before + CUTS);
  assert.equal(status.stats.failed + status.stats.skipped, 0, JSON.stringify(status.alerts));
  // libvirt suspended and resumed each domain once per cut, and both run again.
  for (const [domain, mark] of [
    [A, marks.a],
    [B, marks.b],
  ] as const) {
    await pollFor(
      async () =>
        lifecycle(domain, 'Resumed') >= lifecycle(domain, 'Suspended') &&
        lifecycle(domain, 'Suspended') - mark >= CUTS
          ? true
          : undefined,
      {
        timeoutMs: 30_000,
        intervalMs: 100,
        failure: () => new Error(`libvirt events of ${domain}: ${eventLines.join('\n')}`),
      },
    );
    assert.equal(lifecycle(domain, 'Suspended') - mark, CUTS, `libvirt suspended ${domain} once per cut`);
    assert.equal(
      lifecycle(domain, 'Resumed'),
      lifecycle(domain, 'Suspended'),
      `every suspend of ${domain} resumed`,
    );
    assert.equal((await virsh(daemon.uri, ['domstate', '--', domain])).trim(), 'running');
  }
  console.log(
    `# libvirt write barrier over ${CUTS} cuts: mean ${status.barrier?.mean} ms, max ${status.barrier?.max} ms; newest records per cut ${JSON.stringify(seen)}`,
  );
  await assertReplays((await ctx.client()).workflow.getHandle(groupWorkflowId('lvcausal')));
  await groups.deleteGroup(ctx, 'lvcausal');
  assert.equal((await machines.machineStatus(ctx, A)).group, undefined, 'members leave the group');
});

test('without the barrier, the same check finds B ahead of A: the barrier is what makes the cut', async () => {
  const { ctx } = bed;
  await groups.createGroup(ctx, {
    name: 'lvunsafe',
    machines: [A, B],
    intervalSeconds: 3600,
    barrier: false,
  });
  await firstCutDone(bed.ctx, 'lvunsafe');
  const suspendedBefore = lifecycle(A, 'Suspended') + lifecycle(B, 'Suspended');
  // B's freeze (its backup-begin) waits until B acknowledged a record written after it was asked
  // for, so after A's freeze, which comes first: B must then be ahead in every cut.
  gate.hold(B, async () => causal.bAcknowledged(causal.ackedB + 1));
  let points: GroupPoint[];
  try {
    ({ points } = await causal.cutsUnderLoad('lvunsafe'));
  } finally {
    gate.hold(undefined);
  }
  assert.ok(gate.held >= CUTS, `B's freezes went through the gate (${gate.held} held)`);
  const seen: Array<{ a: number; b: number }> = [];
  for (const point of points) {
    assert.equal(point.consistent, false, 'a cut without the barrier is not marked consistent');
    seen.push(await causal.newestRecords(point));
  }
  const violations = seen.filter((r) => r.b > r.a);
  console.log(
    `# without the barrier: ${violations.length} of ${CUTS} cuts inconsistent (${JSON.stringify(seen)})`,
  );
  assert.equal(
    violations.length,
    CUTS,
    `frozen one after the other, every cut has B ahead of A: ${JSON.stringify(seen)}`,
  );
  assert.equal(
    lifecycle(A, 'Suspended') + lifecycle(B, 'Suspended'),
    suspendedBefore,
    'no domain was suspended without the barrier',
  );
  await groups.deleteGroup(ctx, 'lvunsafe');
});
