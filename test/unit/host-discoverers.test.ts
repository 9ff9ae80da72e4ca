// The libvirt entry of the discoverer map is an adapter over lib/libvirt's two functions: without
// them a libvirt host is refused (never reported as an empty host); with them, the host is checked
// before its domains are listed. (lib/libvirt itself is tested against a real libvirtd.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiscoveryUnavailable, libvirtDiscoverer } from '../../activities/process-server/host-discoverers';
import type { DiscoveredMachine } from '../../shared/host-types';

const host = {
  kind: 'libvirt' as const,
  uri: 'qemu:///system',
  name: 'kvm1',
  site: 'primary',
  createdAt: '2026-12-05T00:00:00Z',
};

test('without lib/libvirt, a libvirt host is refused as not available in this build', async () => {
  await assert.rejects(
    libvirtDiscoverer()(host, []),
    (e: unknown) =>
      e instanceof DiscoveryUnavailable && /libvirt discovery not available in this build/.test(e.message),
  );
});

test('with lib/libvirt, the host is checked first, then its domains are what discoverLibvirt says', async () => {
  const calls: string[] = [];
  const domain: DiscoveredMachine = {
    host: 'kvm1',
    name: 'web',
    state: 'running',
    disks: [],
    changeTracking: { possible: true },
  };
  const discover = libvirtDiscoverer({
    checkLibvirtHost: async (uri) => void calls.push(`check ${uri}`),
    discoverLibvirt: async (uri, name) => (calls.push(`discover ${uri} ${name}`), [domain]),
  });
  assert.deepEqual(await discover(host, []), [domain]);
  assert.deepEqual(calls, ['check qemu:///system', 'discover qemu:///system kvm1']);
  const refusing = libvirtDiscoverer({
    checkLibvirtHost: async () => {
      throw new Error('cannot connect to qemu+ssh://kvm9/system');
    },
    discoverLibvirt: async () => assert.fail('not reached'),
  });
  await assert.rejects(refusing(host, []), /cannot connect/);
});
