// "Replication traffic never starves other traffic on the link when a limit is set" (issue 16), on
// a link built here: the process server runs in a network namespace of its own and reaches
// Temporal and the storage over a veth pair whose outbound side tc's token bucket (tbf) limits
// to LINK. With a site limit below the link, a second TCP flow over the same link (bash writing
// zeros to a sink on the host end) must still get at least LINK - LIMIT, less a tolerance for
// packet headers, while the machine's initial sync runs. Every rate is counted at the host end of
// the link (the sink's bytes, the storage relay's bytes), not taken from OSR's figures.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { azuriteConnectionString } from '../../lib/azure/blob-client';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { setSiteBandwidthLimit } from '../../operations/sites';
import { Netns } from '../chaos/fault-env';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const LINK = 40e6; // bits per second out of the namespace
const LIMIT = 16e6; // the site's limit: 2 MB/s, well within what the process server can send
/** Headers (Ethernet, IP, TCP: about 5 % at 1500 bytes) and TCP sharing a tail-drop queue. */
const TOLERANCE = 0.2;
/** The second flow: its first seconds (slow start, queue filling) are not counted. */
const WARM_UP_MS = 2000;
const WINDOW_MS = 8000;

let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let ns: Netns;
/** Bytes that came over the link into the storage relay: [performance.now(), bytes]. */
const replication: Array<[number, number]> = [];

before(async () => {
  stack = await startTestStack();
  ns = await Netns.create();
  await ns.limitOutbound(LINK);
  const temporal = await ns.relay(stack.config.temporal.port);
  const storage = await ns.relay(stack.config.storage.azuritePort, (bytes) =>
    replication.push([performance.now(), bytes]),
  );
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker(
      'process-server',
      {
        OSR_TEMPORAL_ADDRESS: `${ns.hostAddress}:${temporal}`,
        OSR_STORAGE_CONNECTION_STRING: azuriteConnectionString(storage, ns.hostAddress),
      },
      { prefix: ns.exec },
    ),
  ]);
  ctx = new ControlContext(stack.config);
  await createPolicy(ctx, {
    name: 'unlimited',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  await setSiteBandwidthLimit(ctx, stack.config.site, LIMIT);
  // Random data: nothing compresses, so the bytes on the link are the disk's.
  vm = await startTestMachine({ sizes: [96 * MiB] });
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(80 * MiB, 11));
  await disk.flush();
});

after(async () => {
  await vm?.stop();
  await ctx?.close();
  await stack?.stop();
  await ns?.remove();
});

/** A sink on the host end of the link, and a flow from inside the namespace into it. */
async function otherFlow(seconds: number): Promise<Array<[number, number]>> {
  const received: Array<[number, number]> = [];
  const sink = net.createServer((s) =>
    s.on('data', (c: Buffer) => received.push([performance.now(), c.length])),
  );
  await new Promise<void>((r) => sink.listen(0, ns.hostAddress, r));
  const { port } = sink.address() as net.AddressInfo;
  const [cmd, ...args] = ns.exec;
  const sender = spawn(cmd as string, [
    ...args,
    'bash',
    '-c',
    `exec 3>/dev/tcp/${ns.hostAddress}/${port}; timeout ${seconds} cat /dev/zero >&3; true`,
  ]);
  const code = await new Promise<number | null>((r) => sender.on('exit', r));
  await new Promise<void>((r) => sink.close(() => r()));
  assert.equal(code, 0, 'the second flow ran');
  return received;
}

/** Bits per second of what arrived within [from, from + ms). */
const rate = (arrivals: Array<[number, number]>, from: number, ms: number) =>
  (arrivals.filter(([at]) => at >= from && at < from + ms).reduce((a, [, b]) => a + b, 0) * 8) / (ms / 1000);

const mbit = (b: number) => `${(b / 1e6).toFixed(1)} Mbit/s`;

test(
  'with a site limit below the link rate, another TCP flow over the link keeps the rest while replication runs',
  { timeout: 6 * 60_000 },
  async (t) => {
    // The link alone: what a flow gets with nothing else on it (the tbf limit is real).
    const aloneFlow = await otherFlow(4);
    const aloneFrom = (aloneFlow[0]?.[0] ?? 0) + 1000;
    const alone = rate(aloneFlow, aloneFrom, 2500);
    t.diagnostic(`the second flow alone on the ${mbit(LINK)} link: ${mbit(alone)}`);
    assert.ok(alone <= LINK * 1.05, `the link is limited to ${mbit(LINK)}: a flow alone got ${mbit(alone)}`);

    await machines.protect(ctx, {
      name: 'ns1',
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'unlimited',
    });
    // Replication under way: 8 MiB over the link (of 80).
    const deadline = Date.now() + 4 * 60_000;
    while (replication.reduce((a, [, b]) => a + b, 0) < 8 * MiB) {
      assert.ok(Date.now() < deadline, 'replication did not send 8 MiB in 4 minutes');
      await new Promise((r) => setTimeout(r, 200));
    }
    const flow = await otherFlow((WARM_UP_MS + WINDOW_MS) / 1000 + 1);
    const from = (flow[0]?.[0] ?? 0) + WARM_UP_MS;
    const other = rate(flow, from, WINDOW_MS);
    const replicated = rate(replication, from, WINDOW_MS);
    t.diagnostic(
      `link ${mbit(LINK)}, site limit ${mbit(LIMIT)}: second flow ${mbit(other)}, replication ${mbit(replicated)} over the same ${WINDOW_MS / 1000} s`,
    );
    // Replication really ran through the window (else the flow had the link to itself).
    assert.ok(
      replicated >= 0.5 * LIMIT,
      `replication sent only ${mbit(replicated)} during the window (limit ${mbit(LIMIT)})`,
    );
    assert.ok(
      other >= (1 - TOLERANCE) * (LINK - LIMIT),
      `the second flow got ${mbit(other)} beside replication at ${mbit(replicated)}; at least ${mbit((1 - TOLERANCE) * (LINK - LIMIT))} (link - limit, less ${TOLERANCE * 100} %) was due`,
    );
  },
);
