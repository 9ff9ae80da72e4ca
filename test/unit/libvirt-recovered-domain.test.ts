// The recovered domain's definition, made from a protected domain's own XML: what is kept (CPU,
// memory, devices), what is replaced (name, UUID, disk images, NICs' networks, host-bound serial
// ports) and the OSR tag cleanup finds it by. The same definitions run on a real libvirtd in
// test/integration/libvirt-target.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  drillNetworkXml,
  nameAndTag,
  recoveredDomainXml,
  recoveredUuid,
  sameTag,
  type OsrTag,
} from '../../lib/libvirt/recovered-domain';
import { parseXml, type XmlNode } from '../../lib/libvirt/virsh';

const KEPT = `<domain type='kvm'>
  <name>web-1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <metadata><app:owner xmlns:app="https://example.com/app">shop</app:owner></metadata>
  <memory unit='KiB'>2097152</memory>
  <vcpu placement='static'>2</vcpu>
  <cpu mode='host-model'/>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/primary/web-1.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/primary/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='prod'/>
      <target dev='vnet7'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cd'/>
      <source bridge='br-backup'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='/primary/console.log'/><target port='0'/></serial>
    <serial type='unix'><source mode='connect' path='/primary/guest.sock'/><target port='1'/></serial>
    <console type='file'><source path='/primary/console.log'/><target type='serial' port='0'/></console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web-1.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
  </devices>
</domain>`;

const tag: OsrTag = { machine: 'web-1', job: '20261206T030000000Z', kind: 'drill' };
const spec = {
  name: 'web-1-drill-20261206T030000000Z',
  uuid: recoveredUuid(tag),
  tag,
  disks: [{ target: 'vda', file: '/recovery/web-1/vda.qcow2', format: 'qcow2' as const }],
  consoleLog: '/recovery/web-1/console.log',
};
const domainOf = (xml: string) => parseXml(xml).domain as XmlNode;
const devicesOf = (xml: string) => domainOf(xml).devices as XmlNode;

test('the recovered domain keeps CPU, memory and machine type, and takes a new name and UUID', () => {
  const made = recoveredDomainXml(KEPT, spec);
  const d = domainOf(made.xml);
  assert.equal(d.name, spec.name);
  assert.equal(d.uuid, spec.uuid);
  assert.match(String(d.uuid), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(d.uuid, '11111111-2222-3333-4444-555555555555');
  assert.deepEqual(d.memory, { '@unit': 'KiB', '#text': '2097152' });
  assert.deepEqual(d.vcpu, { '@placement': 'static', '#text': '2' });
  assert.equal(d['@type'], 'kvm');
  assert.equal(((d.os as XmlNode).type as XmlNode)['@machine'], 'pc-q35-7.2');
  assert.equal((d.os as XmlNode).nvram, undefined, "the primary host's UEFI variables file is not kept");
  assert.equal(recoveredUuid(tag), spec.uuid, 'a retried define names the same UUID');
  assert.notEqual(recoveredUuid({ ...tag, job: 'other' }), spec.uuid);
});

test('the recovered domain carries the OSR tag beside the metadata it had, and is found by it', () => {
  const made = recoveredDomainXml(KEPT, spec);
  const { name, tag: found } = nameAndTag(made.xml, 'domain');
  assert.equal(name, spec.name);
  assert.ok(sameTag(found, tag));
  assert.ok(!sameTag(found, { ...tag, job: '20261206T030000001Z' }), 'another job is not this one');
  assert.ok(!sameTag(found, { ...tag, kind: 'failover' }));
  assert.equal(nameAndTag(KEPT, 'domain').tag, undefined, 'the protected domain has no OSR tag');
  const meta = domainOf(made.xml).metadata as XmlNode;
  assert.ok(meta['app:owner'], "the domain's own metadata stays");
});

test('disks point at the recovered images; a cdrom of the primary host is left out', () => {
  const made = recoveredDomainXml(KEPT, spec);
  const disks = devicesOf(made.xml).disk as XmlNode[];
  assert.equal(disks.length, 1);
  assert.deepEqual(disks[0]!.source, { '@file': '/recovery/web-1/vda.qcow2' });
  assert.equal((disks[0]!.driver as XmlNode)['@type'], 'qcow2');
  assert.equal(disks[0]!.backingStore, undefined);
  assert.ok(disks[0]!.address, 'the PCI address stays: the guest names its disks the same');
  assert.deepEqual(made.dropped, ['cdrom sda']);
  assert.throws(
    () =>
      recoveredDomainXml(KEPT, {
        ...spec,
        disks: [...spec.disks, { target: 'vdb', file: '/x', format: 'qcow2' }],
      }),
    /no disk vdb/,
  );
});

test('a drill puts every NIC on its isolated network; a failover maps NICs by network and keeps the rest', () => {
  const drill = devicesOf(recoveredDomainXml(KEPT, { ...spec, allNicsOn: 'osr-drill-x' }).xml)
    .interface as XmlNode[];
  assert.deepEqual(
    drill.map((n) => [n['@type'], n.source, (n.mac as XmlNode)['@address']]),
    [
      ['network', { '@network': 'osr-drill-x' }, '52:54:00:aa:bb:cc'],
      ['network', { '@network': 'osr-drill-x' }, '52:54:00:aa:bb:cd'],
    ],
  );
  assert.ok(
    drill.every((n) => n.target === undefined),
    "the primary's tap names are not kept",
  );
  const failover = devicesOf(
    recoveredDomainXml(KEPT, { ...spec, tag: { ...tag, kind: 'failover' }, networkMap: { prod: 'dr-prod' } })
      .xml,
  ).interface as XmlNode[];
  assert.deepEqual(failover[0]!.source, { '@network': 'dr-prod' });
  assert.equal(failover[1]!['@type'], 'bridge');
  assert.deepEqual(failover[1]!.source, { '@bridge': 'br-backup' }, 'an unmapped NIC is kept');
});

test("serial ports of the primary host: the first writes the console log, others are null; the agent's channel stays", () => {
  const made = recoveredDomainXml(KEPT, spec);
  const devices = devicesOf(made.xml);
  assert.deepEqual(devices.serial, [
    { '@type': 'file', source: { '@path': spec.consoleLog }, target: { '@port': '0' } },
    { '@type': 'null', target: { '@port': '1' } },
  ]);
  assert.equal(devices.console, undefined, 'libvirt makes the console from serial 0 again');
  const [channel] = devices.channel as XmlNode[];
  assert.equal(channel!.source, undefined, 'libvirt makes the socket in its own folder');
  assert.equal((channel!.target as XmlNode)['@name'], 'org.qemu.guest_agent.0');
  assert.equal(made.guestAgent, true);
  assert.equal(made.serialConsole, true);
});

test('a drill network has no forward element (isolated) and carries the tag', () => {
  const xml = drillNetworkXml('osr-drill-x', 'osrd0123456789', tag);
  const net = parseXml(xml).network as XmlNode;
  assert.equal(net.forward, undefined);
  assert.equal((net.bridge as XmlNode)['@name'], 'osrd0123456789');
  assert.ok(sameTag(nameAndTag(xml, 'network').tag, tag));
});

test('XML that is not a domain is refused', () => {
  assert.throws(
    () => recoveredDomainXml('<network><name>x</name></network>', spec),
    /not a libvirt <domain>/,
  );
});
