// Where a recovery lands in Azure (placement) and what its resources are called and tagged: the
// rules a drill relies on never to touch production or another job's resources.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig, ConfigError } from '../../lib/config/config';
import { madeBy, names, recoveryTags } from '../../lib/azure-arm/naming';
import { PlacementError, resolvePlacement } from '../../lib/azure-arm/placement';
import type { AzureTargetSettings } from '../../shared/recovery-types';

const sub = '/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks';
const settings: AzureTargetSettings = {
  resourceGroup: 'rg',
  vmSize: 'Standard_B2s',
  osDiskType: 'StandardSSD_LRS',
  subnetId: `${sub}/prod/subnets/a`,
  privateIp: '10.1.0.10',
};
const config = {
  armEndpoint: 'https://management.azure.com',
  pollIntervalSeconds: 2,
  location: 'westeurope',
};

test('a failover lands on the production subnet with its IP; a drill on the isolated subnet without it', () => {
  const f = resolvePlacement(config, 'm', settings, undefined, 'failover');
  assert.deepEqual(
    [f.subnetId, f.privateIp, f.osType, f.hyperVGeneration],
    [settings.subnetId, '10.1.0.10', 'Linux', 'V1'],
  );
  const d = resolvePlacement(
    { ...config, drillSubnetId: `${sub}/drill/subnets/x` },
    'm',
    settings,
    undefined,
    'drill',
  );
  assert.deepEqual([d.subnetId, d.privateIp], [`${sub}/drill/subnets/x`, undefined]);
  const own = resolvePlacement(
    config,
    'm',
    { ...settings, drillSubnetId: `${sub}/own/subnets/y` },
    undefined,
    'drill',
  );
  assert.equal(
    own.subnetId,
    `${sub}/own/subnets/y`,
    "the machine's drill subnet wins over the configured one",
  );
});

test('a drill with no isolated subnet is refused unless the settings allow the production subnet', () => {
  assert.throws(() => resolvePlacement(config, 'm', settings, undefined, 'drill'), PlacementError);
  const p = resolvePlacement(config, 'm', { ...settings, drillOnProductionSubnet: true }, undefined, 'drill');
  assert.deepEqual([p.subnetId, p.privateIp], [settings.subnetId, undefined], 'never the production IP');
  assert.throws(
    () => resolvePlacement({ ...config, location: undefined }, 'm', settings, undefined, 'failover'),
    /no Azure region for m/,
  );
});

test('names are stable per job and kind and fit Azure limits; tags say which job made a resource', () => {
  const ref = { machine: 'web-1', job: '20261205T000000000Z', kind: 'drill' as const };
  assert.equal(names.vm(ref), 'osr-test-web-1-20261205T000000000Z');
  assert.equal(names.disk(ref, 'disk0'), 'osr-test-web-1-20261205T000000000Z-disk0');
  assert.notEqual(names.vm({ ...ref, kind: 'failover' }), names.vm(ref));
  const long = { ...ref, machine: 'a'.repeat(63) };
  assert.ok(names.vm(long).length <= 64);
  assert.notEqual(names.vm(long), names.vm({ ...long, job: '20261205T000000001Z' }));
  assert.ok(madeBy(recoveryTags(ref), ref));
  assert.ok(!madeBy(recoveryTags(ref), { ...ref, job: '20261205T000000001Z' }));
  assert.ok(!madeBy({ owner: 'someone' }, ref));
});

test('the azure configuration: https only, a GUID subscription, paths resolved', () => {
  const env = {
    OSR_CONFIG: '/nonexistent-osr-config.json',
    OSR_AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001',
    OSR_AZURE_CA_FILE: 'ca.pem',
  };
  assert.throws(() => loadConfig({ env, cwd: '/tmp' }), ConfigError, 'OSR_CONFIG must exist');
  const ok = loadConfig({ env: { ...env, OSR_CONFIG: '' }, cwd: '/tmp' });
  assert.equal(ok.azure.armEndpoint, 'https://management.azure.com');
  assert.equal(ok.azure.caFile, '/tmp/ca.pem');
  assert.throws(
    () => loadConfig({ env: { OSR_AZURE_ARM_ENDPOINT: 'http://127.0.0.1:1' }, cwd: '/tmp' }),
    /OSR_AZURE_ARM_ENDPOINT/,
  );
  assert.throws(() => loadConfig({ env: { OSR_AZURE_SUBSCRIPTION_ID: 'nope' }, cwd: '/tmp' }), /GUID/);
});
