// Drills and failovers into the azure target, on the real stack (Temporal dev server, Azurite, the
// workers) against the ARM stand-in: the managed disks (imported from the failover blobs, which are
// fixed VHDs), then the NIC, then the VM, all tagged with the job; cleanup removes exactly one
// drill's resources; change-point replaces the disks; commit keeps them; a 429, a 409 or a lost
// response in the middle of a create makes no second resource.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { CONTAINERS } from '../../lib/azure/blob-client';
import { fixedVhdFooterOf, VHD_ALIGN_BYTES, VHD_FOOTER_BYTES } from '../../lib/disk/vhd';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import * as plans from '../../operations/plans';
import { recoveryDocs, type RecoveredMachine } from '../../shared/recovery-types';
import type { ArmStandin } from '../helpers/arm-standin';
import type { StoredResource } from '../helpers/arm-standin-resources';
import {
  DRILL_SUBNET,
  PROD_SUBNET,
  RG,
  STORAGE_ACCOUNT_ID,
  resourcesOfJob,
  startAzureBed,
  type AzureBed,
} from '../helpers/azure-target-fixture';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { assertReplays } from '../helpers/replay';
import { startTestApi } from '../helpers/api-client';

const MiB = 1024 * 1024;
const M = 'az1';
let bed: AzureBed;
let ctx: ControlContext;
let arm: ArmStandin;
let vm: TestMachine;

before(async () => {
  bed = await startAzureBed();
  ({ ctx, arm } = bed);
  // 9 MiB + 512: a size that is no whole MiB, so the VHD's rounding shows.
  vm = await startTestMachine({ sizes: [9 * MiB + 512, 4 * MiB] });
  const disk = await vm.disk(0);
  await disk.write(0, pseudoRandom(2 * MiB, 5));
  await disk.flush();
  await machines.protect(ctx, {
    name: M,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
    platform: { osType: 'Linux', hyperVGeneration: 'V2' },
  });
  await waitForStatus(ctx, M, (s) => s.state === 'protected');
  await failover.configureRecovery(ctx, M, {
    target: 'azure',
    azure: {
      resourceGroup: RG,
      vmSize: 'Standard_D2s_v5',
      osDiskType: 'Premium_LRS',
      subnetId: PROD_SUBNET(arm.subscriptionId),
      drillSubnetId: DRILL_SUBNET(arm.subscriptionId),
      privateIp: '10.1.0.10',
    },
  });
});

after(async () => {
  await vm?.stop();
  await bed?.stop();
});

const props = (r: StoredResource) => r.properties as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The resources a job made: exactly two disks, one NIC, one VM, each tagged with the job. */
function assertOneSet(job: string, kind: 'drill' | 'failover') {
  const mine = resourcesOfJob(arm, job);
  const count = (k: string) => mine.filter((r) => r.kind === k).length;
  assert.deepEqual(
    [count('disks'), count('networkInterfaces'), count('virtualMachines')],
    [2, 1, 1],
    `job ${job}: ${mine.map((r) => r.name).join(', ')}`,
  );
  for (const r of mine) {
    assert.equal(r.resourceGroup, RG);
    assert.equal(r.tags['osr-machine'], M);
    assert.equal(r.tags['osr-kind'], kind);
    assert.equal(props(r).provisioningState, 'Succeeded', r.name);
  }
  const [disk0, disk1] = ['disk0', 'disk1'].map((d) => mine.find((r) => r.tags['osr-disk'] === d)!);
  return {
    disk0: disk0!,
    disk1: disk1!,
    nic: mine.find((r) => r.kind === 'networkInterfaces')!,
    vm: mine.find((r) => r.kind === 'virtualMachines')!,
  };
}

/** The blob a disk was imported from, read back: a fixed VHD of the disk's size rounded up to a MiB. */
async function assertImportedFromFixedVhd(disk: StoredResource, prefix: string, sizeBytes: number) {
  const c = props(disk).creationData as { createOption: string; sourceUri: string; storageAccountId: string };
  assert.equal(c.createOption, 'Import');
  assert.equal(c.storageAccountId, STORAGE_ACCOUNT_ID(arm.subscriptionId));
  const container = ctx.blobService.getContainerClient(CONTAINERS.failover);
  const blobName = `${prefix}/${disk.tags['osr-disk']}`;
  assert.equal(c.sourceUri, container.getPageBlobClient(blobName).url, 'sourceUri is the failover blob');
  const blob = container.getPageBlobClient(blobName);
  const length = (await blob.getProperties()).contentLength!;
  assert.equal((length - VHD_FOOTER_BYTES) % VHD_ALIGN_BYTES, 0, `${blobName}: size minus 512 is whole MiB`);
  assert.equal(length - VHD_FOOTER_BYTES, Math.ceil(sizeBytes / MiB) * MiB);
  const footer = fixedVhdFooterOf(
    await blob.downloadToBuffer(length - VHD_FOOTER_BYTES, VHD_FOOTER_BYTES),
    length,
  );
  assert.ok(footer, `${blobName} ends in a fixed VHD footer`);
}

let drill1: string;

test('a drill into azure imports the disks from the failover VHDs, then makes the NIC on the drill subnet, then the VM', async () => {
  const before = arm.store.creations.length;
  const { ref, status } = await failover.startTestFailover(ctx, M);
  drill1 = ref.job;
  assert.equal(status?.state, 'ready', JSON.stringify(status?.steps));
  assert.deepEqual(
    status.steps.map((s) => [s.name, s.state]),
    [
      ['create disks', 'done'],
      ['record', 'done'],
      ['azure disks', 'done'],
      ['azure nic', 'done'],
      ['azure vm', 'done'],
      ['materialize', 'skipped'],
      ['boot check', 'skipped'],
    ],
  );
  const set = assertOneSet(drill1, 'drill');
  // Created in this order: the disks, the NIC, then the VM that uses them.
  assert.deepEqual(
    arm.store.creations.slice(before).map((c) => c.name),
    [set.disk0.name, set.disk1.name, set.nic.name, set.vm.name],
  );
  // OS disk: the type asked for, OS type and Hyper-V generation recorded at protect; a data disk has neither.
  assert.deepEqual(set.disk0.sku, { name: 'Premium_LRS' });
  assert.equal(props(set.disk0).osType, 'Linux');
  assert.equal(props(set.disk0).hyperVGeneration, 'V2');
  assert.equal(props(set.disk1).osType, undefined);
  for (const d of status.disks)
    await assertImportedFromFixedVhd(
      d.diskId === 'disk0' ? set.disk0 : set.disk1,
      `test-${M}-${drill1}`,
      d.sizeBytes,
    );
  // The drill's NIC is on the isolated subnet, with a dynamic address: never production's.
  const ip = props(set.nic).ipConfigurations[0].properties;
  assert.equal(ip.subnet.id, DRILL_SUBNET(arm.subscriptionId));
  assert.equal(ip.privateIPAllocationMethod, 'Dynamic');
  assert.notEqual(ip.privateIPAddress, '10.1.0.10');
  const v = props(set.vm);
  assert.equal(v.hardwareProfile.vmSize, 'Standard_D2s_v5');
  assert.equal(v.storageProfile.osDisk.managedDisk.id, set.disk0.id);
  assert.equal(v.storageProfile.osDisk.createOption, 'Attach');
  assert.deepEqual(
    v.storageProfile.dataDisks.map((d: { lun: number; managedDisk: { id: string } }) => [
      d.lun,
      d.managedDisk.id,
    ]),
    [[0, set.disk1.id]],
  );
  assert.equal(v.networkProfile.networkInterfaces[0].id, set.nic.id);
  // Every call carried the api-version its SDK sends: none was refused.
  assert.deepEqual(
    arm.requests.filter((r) => r.status === 400),
    [],
  );
  const record = (await ctx.vault.read<RecoveredMachine>(recoveryDocs.recovered(M, drill1)))?.value;
  assert.equal(record?.azure?.vm?.id, set.vm.id);
  assert.deepEqual(
    status.azure?.disks.map((d) => d.id),
    [set.disk0.id, set.disk1.id],
  );
  await assertReplays((await ctx.client()).workflow.getHandle(ref.workflowId), 'testFailover-azure-drill');
});

let drill2: string;

test('a 429, a 409 and a lost response in the middle of creates make no second resource', async () => {
  arm.inject({ method: 'PUT', type: 'disks', nth: 2, fault: { kind: 'throttle', retryAfterSeconds: 1 } });
  arm.inject({ method: 'PUT', type: 'networkInterfaces', nth: 1, fault: { kind: 'conflict' } });
  arm.inject({ method: 'PUT', type: 'virtualMachines', nth: 1, fault: { kind: 'lost-response' } });
  const mark = arm.requests.length;
  const { ref, status } = await failover.startTestFailover(ctx, M, { another: true });
  drill2 = ref.job;
  assert.equal(status?.state, 'ready', JSON.stringify(status?.steps));
  const seen = arm.requests.slice(mark);
  assert.ok(
    seen.some((r) => r.status === 429),
    'the stand-in throttled a disk',
  );
  assert.ok(
    seen.some((r) => r.status === 409),
    'the stand-in refused the NIC once',
  );
  assert.ok(
    seen.some((r) => r.status === 'dropped'),
    'the VM create lost its answer',
  );
  assertOneSet(drill2, 'drill');
  assert.equal(
    arm.store.creations.filter((c) => c.name.includes(drill2)).length,
    4,
    'each resource of the drill was created once',
  );
});

test('cleanup removes exactly the drill it names, VM first; the other drill and foreign resources stay', async () => {
  // A resource OSR did not make, in the same group, named like nothing of OSR's.
  const foreign = arm.store.put(arm.subscriptionId, RG, 'disks', 'someone-elses-disk', {
    location: 'westeurope',
    tags: { owner: 'app-team' },
    properties: { creationData: { createOption: 'Import', sourceUri: 'https://x/y', storageAccountId: 'z' } },
  });
  arm.store.provisioned(foreign.resource);
  const second = resourcesOfJob(arm, drill2)
    .map((r) => r.id)
    .sort();
  const gone = resourcesOfJob(arm, drill1);
  const mark = arm.store.deletions.length;
  const [cleaned] = await failover.cleanupTestFailover(ctx, drill1);
  assert.equal(cleaned?.status?.state, 'cleaned-up');
  assert.deepEqual(resourcesOfJob(arm, drill1), []);
  assert.deepEqual(
    arm.store.deletions.slice(mark).map((d) => d.kind),
    ['virtualMachines', 'networkInterfaces', 'disks', 'disks'],
  );
  assert.deepEqual(
    arm.store.deletions
      .slice(mark)
      .map((d) => d.name)
      .sort(),
    gone.map((r) => r.name).sort(),
  );
  assert.deepEqual(
    resourcesOfJob(arm, drill2)
      .map((r) => r.id)
      .sort(),
    second,
    'the other drill survives',
  );
  assert.ok(arm.store.get(foreign.resource.id), 'a resource without the job tags is never touched');
  await assertReplays(
    (await ctx.client()).workflow.getHandle(cleaned.ref.workflowId),
    'cleanupTestFailover-azure-drill',
  );
  await failover.cleanupTestFailover(ctx, drill2);
  assert.deepEqual(resourcesOfJob(arm, drill2), []);
});

test('a drill without an isolated subnet is refused before it starts, naming the fix', async () => {
  await failover.configureRecovery(ctx, M, { azure: { drillSubnetId: null } });
  await assert.rejects(failover.startTestFailover(ctx, M), /needs an isolated subnet.*--drill-subnet/);
  await assert.rejects(
    failover.configureRecovery(ctx, M, { azure: { drillSubnetId: PROD_SUBNET(arm.subscriptionId) } }),
    /drills must be isolated/,
  );
  await failover.configureRecovery(ctx, M, { azure: { drillSubnetId: DRILL_SUBNET(arm.subscriptionId) } });
});

test("a recovery plan maps the machine's source network to subnets: its drill lands on the plan's drill subnet, its cleanup removes it", async () => {
  const planDrill = `/subscriptions/${arm.subscriptionId}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/dr-vnet/subnets/plan-drill`;
  await failover.configureRecovery(ctx, M, { azure: { sourceNetwork: 'lan-a' } });
  await assert.rejects(
    plans.createPlan(ctx, {
      name: 'azbad',
      groups: [{ machines: [M] }],
      networks: [{ source: 'lan-a', subnetId: planDrill, drillSubnetId: planDrill }],
    }),
    /drills must be isolated/,
  );
  await plans.createPlan(ctx, {
    name: 'azplan',
    groups: [{ machines: [M] }],
    networks: [{ source: 'lan-a', subnetId: PROD_SUBNET(arm.subscriptionId), drillSubnetId: planDrill }],
  });
  const drill = await plans.startPlan(ctx, 'azplan', 'test-failover');
  assert.equal(drill.status?.state, 'ready', JSON.stringify(drill.status));
  const set = assertOneSet(drill.ref.job, 'drill');
  assert.equal(props(set.nic).ipConfigurations[0].properties.subnet.id, planDrill);
  const cleaned = await plans.startPlan(ctx, 'azplan', 'cleanup');
  assert.equal(cleaned.status?.state, 'cleaned-up');
  assert.deepEqual(resourcesOfJob(arm, drill.ref.job), []);
  await failover.configureRecovery(ctx, M, { azure: { sourceNetwork: null } });
});

test('failover into azure lands on the production subnet with its static IP; change-point replaces the disks; commit keeps them', async () => {
  const p1 = await machines.takePoint(ctx, M, { kind: 'crash', tag: 'p1' });
  const { ref, status } = await failover.startFailover(ctx, M, { point: p1.id });
  assert.equal(status?.state, 'failed-over', JSON.stringify(status?.steps));
  const first = assertOneSet(ref.job, 'failover');
  const ip = props(first.nic).ipConfigurations[0].properties;
  assert.equal(ip.subnet.id, PROD_SUBNET(arm.subscriptionId));
  assert.deepEqual([ip.privateIPAllocationMethod, ip.privateIPAddress], ['Static', '10.1.0.10']);
  assert.equal(first.disk0.tags['osr-point'], p1.id);

  const disk = await vm.disk(0);
  await disk.write(3 * MiB, pseudoRandom(MiB, 9));
  await disk.flush();
  const p2 = await machines.takePoint(ctx, M, { kind: 'crash', tag: 'p2' });
  const mark = arm.store.creations.length;
  const changed = await failover.changeRecoveryPoint(ctx, M, p2.id);
  assert.equal(changed.state, 'failed-over', JSON.stringify(changed.steps));
  const second = assertOneSet(ref.job, 'failover');
  assert.equal(second.disk0.tags['osr-point'], p2.id, 'the disks are the new point');
  assert.equal(second.disk1.tags['osr-point'], p2.id);
  assert.deepEqual(
    arm.store.creations.slice(mark).map((c) => c.kind),
    ['disks', 'disks', 'networkInterfaces', 'virtualMachines'],
  );
  for (const d of changed.disks)
    await assertImportedFromFixedVhd(
      d.diskId === 'disk0' ? second.disk0 : second.disk1,
      `${M}-${ref.job}`,
      d.sizeBytes,
    );

  const committed = await failover.commitFailover(ctx, M);
  assert.equal(committed.state, 'committed');
  assert.deepEqual(
    resourcesOfJob(arm, ref.job)
      .map((r) => r.id)
      .sort(),
    Object.values(second)
      .map((r) => r.id)
      .sort(),
    'commit keeps the VM, NIC and disks',
  );
  await assertReplays((await ctx.client()).workflow.getHandle(ref.workflowId), 'failover-azure');
});

test('the API reads and changes the recovery target, the azure settings and the platform; a bad change names the fix', async () => {
  const token = randomBytes(32).toString('base64url');
  const api = await startTestApi(bed, token, 'azure-api-test');
  try {
    const call = async (method: string, body?: unknown) => {
      const res = await fetch(`${api.url}/v1/machines/${M}/recovery-settings`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
    };
    const now = await call('GET');
    assert.equal(now.status, 200);
    assert.equal(now.body.target, 'azure');
    assert.deepEqual(now.body.platform, { osType: 'Linux', hyperVGeneration: 'V2' });
    const changed = await call('POST', {
      azure: { vmSize: 'Standard_B2s', privateIp: null },
      platform: { osType: 'Windows' },
    });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.equal(changed.body.azure.vmSize, 'Standard_B2s');
    assert.equal(changed.body.azure.privateIp, undefined);
    assert.deepEqual(changed.body.platform, { osType: 'Windows', hyperVGeneration: 'V2' });
    assert.equal((await ctx.vault.machine(M))?.platform?.osType, 'Windows', 'recorded in the vault');
    const bad = await call('POST', { azure: { osDiskType: 'UltraSSD_LRS' } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /osDiskType.*Standard_LRS/);
    const missing = await call('POST', { azure: { subnetId: null } });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error.message, /needs --subnet/);
    assert.equal((await call('GET')).body.azure.subnetId, PROD_SUBNET(arm.subscriptionId), 'nothing changed');
  } finally {
    await api.close();
  }
});
