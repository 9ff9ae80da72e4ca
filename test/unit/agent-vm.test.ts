// `osr agent install --vm`: where the agent goes for a discovered VMware VM and what is refused
// (fake discovery results; the integration test runs it against vcsim and a real guest), and how
// `osr discover` marks a VM with a linked agent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DiscoveredMachine } from '../../shared/host-types';
import type { AgentView } from '../../operations/agents';
import { agentProtections, markAgentVms } from '../../operations/agents';
import type { ProtectedMachine } from '../../shared/replication-types';
import { parseVmSpec, vmInstallTarget } from '../../operations/agent-vm';
import { OperationError } from '../../operations/context';

const vm = (name: string, state: string, details: Record<string, string> = {}): DiscoveredMachine => ({
  host: 'vc1',
  name,
  state,
  disks: [],
  changeTracking: { possible: false, reason: 'in-guest agent' },
  details: { datacenter: 'DC0', vmId: `vm-${name}`, ...details },
});

const refused = (fn: () => unknown, kind: OperationError['code'], message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OperationError, String(err));
    assert.equal(err.code, kind);
    assert.match(err.message, message);
    return true;
  });

test('--vm is <vcenter-host>/<vm-name>; a VM name may hold a slash', () => {
  assert.deepEqual(parseVmSpec('vc1/web/01'), { host: 'vc1', vm: 'web/01' });
  refused(() => parseVmSpec('web01'), 'invalid', /not <vcenter-host>\/<vm-name>/);
  refused(() => parseVmSpec('vc1/'), 'invalid', /not <vcenter-host>\/<vm-name>/);
});

test('the guest IP VMware Tools reports is the default target; --ssh overrides it, keeping the link', () => {
  const machines = [vm('web', 'poweredOn', { guestIp: '10.1.2.3', instanceUuid: 'u-1' })];
  assert.deepEqual(vmInstallTarget('vc1', machines, 'web'), {
    ssh: 'root@10.1.2.3',
    link: { host: 'vc1', vm: 'web', moref: 'vm-web', instanceUuid: 'u-1', address: '10.1.2.3' },
  });
  const nat = vmInstallTarget('vc1', machines, 'web', 'admin@127.0.0.1:2222');
  assert.equal(nat.ssh, 'admin@127.0.0.1:2222');
  assert.deepEqual(nat.link, {
    host: 'vc1',
    vm: 'web',
    moref: 'vm-web',
    instanceUuid: 'u-1',
    address: '127.0.0.1',
  });
  const v6 = vmInstallTarget('vc1', [vm('db', 'poweredOn', { guestIp: 'fd00::5' })], 'db');
  assert.equal(v6.ssh, 'root@[fd00::5]');
  assert.equal(v6.link.address, 'fd00::5');
});

test('an unknown, powered-off or address-less VM is refused with the fix', () => {
  const many = Array.from({ length: 7 }, (_, i) => vm(`vm${i}`, 'poweredOn'));
  refused(
    () => vmInstallTarget('vc1', many, 'nope'),
    'not-found',
    /no VM nope; it has vm0, vm1, vm2, vm3, vm4 … \(7 in all\)/,
  );
  refused(() => vmInstallTarget('vc1', [], 'nope'), 'not-found', /it has none/);
  const off = [vm('web', 'poweredOff', { guestIp: '10.1.2.3' })];
  refused(
    () => vmInstallTarget('vc1', off, 'web', 'root@h'),
    'invalid',
    /web on vc1 is poweredOff: power it on/,
  );
  refused(
    () => vmInstallTarget('vc1', [vm('web', 'poweredOn')], 'web'),
    'invalid',
    /^VMware Tools reports no IP for web: give --ssh root@<address>$/,
  );
});

test('osr discover marks the VM of a linked agent (same vCenter host and moref) and no other', () => {
  const agent = {
    id: 'ag-0123456789ab',
    vm: { host: 'vc1', vm: 'web', moref: 'vm-web', address: '10.1.2.3' },
  } as AgentView;
  const plain = { id: 'ag-ba9876543210' } as AgentView;
  const other = { ...vm('web', 'poweredOn'), host: 'vc2' };
  const [web, db, elsewhere] = markAgentVms(
    [vm('web', 'poweredOn'), vm('db', 'poweredOn'), other],
    [plain, agent],
  );
  assert.equal(web?.agentId, 'ag-0123456789ab');
  assert.equal(web?.changeTracking.possible, false);
  assert.match(
    web?.changeTracking.reason ?? '',
    /protectable through agent ag-0123456789ab: `osr protect <name> --agent ag-0123456789ab/,
  );
  assert.equal(db?.agentId, undefined);
  assert.equal(db?.changeTracking.reason, 'in-guest agent');
  assert.equal(elsewhere?.agentId, undefined);
});

test("a VM whose agent protects a machine shows that machine as protectedAs; another agent's does not", () => {
  const agent = {
    id: 'ag-0123456789ab',
    vm: { host: 'vc1', vm: 'web', moref: 'vm-web', address: '10.1.2.3' },
  } as AgentView;
  const machines = [
    { name: 'web-prod', source: { type: 'agent', agentId: 'ag-0123456789ab', disks: ['vdb'] } },
    { name: 'db', source: { type: 'agent', agentId: 'ag-ba9876543210' } },
    { name: 'vm-1', source: { type: 'qemu', qmpSocket: '/run/vm-1.qmp' } },
  ] as ProtectedMachine[];
  const protectedBy = agentProtections(machines);
  assert.deepEqual(
    [...protectedBy],
    [
      ['ag-0123456789ab', 'web-prod'],
      ['ag-ba9876543210', 'db'],
    ],
  );
  const [web] = markAgentVms([vm('web', 'poweredOn')], [agent], protectedBy);
  assert.equal(web?.protectedAs, 'web-prod');
  const [unprotected] = markAgentVms([vm('web', 'poweredOn')], [agent], new Map());
  assert.equal(unprotected?.protectedAs, undefined);
});
