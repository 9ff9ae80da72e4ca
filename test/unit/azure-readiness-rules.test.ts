// The Azure readiness rules over what a guest printed (fixture text in the format READINESS_SCRIPT
// writes): drivers built in, as modules, in the initramfs; MAC-bound network files; device names.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readinessOf } from '../../lib/qemu/azure-readiness-rules';
import { readinessLines } from '../../shared/azure-readiness';

const AT = '2026-12-06T00:00:00.000Z';
const K = '6.1.0-28-amd64';
const kernelHeader = `@@kernel ${K}\n@@file /proc/cmdline\nBOOT_IMAGE=/vmlinuz root=UUID=1f2e ro quiet\n`;
const modulesDep = [
  `@@grep /lib/modules/${K}/modules.dep`,
  'kernel/drivers/hv/hv_vmbus.ko.xz:',
  'kernel/drivers/scsi/hv_storvsc.ko.xz: kernel/drivers/hv/hv_vmbus.ko.xz',
  'kernel/drivers/net/hyperv/hv_netvsc.ko.xz: kernel/drivers/hv/hv_vmbus.ko.xz',
].join('\n');

function problems(output: string): string[] {
  const r = readinessOf(output, AT);
  assert.ok(r.checked);
  return r.problems.map((p) => p.what);
}

test('a Debian guest with the drivers as modules and in its initramfs, fstab by UUID, is ready', () => {
  const out = [
    kernelHeader,
    modulesDep,
    '@@file /etc/fstab',
    '# /dev/vda1 was here',
    'UUID=1f2e / ext4 errors=remount-ro 0 1',
    `@@initramfs /boot/initrd.img-${K}`,
    `usr/lib/modules/${K}/kernel/drivers/hv/hv_vmbus.ko.xz`,
    `usr/lib/modules/${K}/kernel/drivers/scsi/hv_storvsc.ko.xz`,
  ].join('\n');
  const r = readinessOf(out, AT);
  assert.deepEqual(r, { checked: true, checkedAt: AT, ready: true, kernel: K, problems: [] });
});

test('drivers built in need nothing in the initramfs', () => {
  const out = [
    kernelHeader,
    `@@grep /lib/modules/${K}/modules.builtin`,
    'kernel/drivers/hv/hv_vmbus.ko',
    'kernel/drivers/scsi/hv_storvsc.ko',
    'kernel/drivers/net/hyperv/hv_netvsc.ko',
    `@@initramfs /boot/initramfs-${K}.img`,
  ].join('\n');
  assert.deepEqual(problems(out), []);
});

test('missing drivers, drivers left out of the boot image, and each fixed name are problems with a fix', () => {
  const out = [
    `@@kernel ${K}`,
    '@@file /proc/cmdline',
    'console=ttyS0 root=/dev/vda1 ro',
    `@@grep /lib/modules/${K}/modules.dep`,
    'kernel/drivers/hv/hv_vmbus.ko:',
    'kernel/drivers/scsi/hv_storvsc.ko: kernel/drivers/hv/hv_vmbus.ko',
    `@@initramfs /boot/initrd.img-${K}`,
    `usr/lib/modules/${K}/kernel/drivers/hv/hv_vmbus.ko`,
    '@@file /etc/fstab',
    '/dev/vda1 / ext4 defaults 0 1',
    'LABEL=data /data xfs defaults 0 0',
    '/dev/sdb1 /srv ext4 defaults 0 0',
    '@@file /etc/udev/rules.d/70-persistent-net.rules',
    'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"',
    '@@file /etc/sysconfig/network-scripts/ifcfg-eth0',
    'DEVICE=eth0',
    'HWADDR=52:54:00:12:34:56',
    '@@file /etc/systemd/network/10-lan.network',
    '[Match]',
    'MACAddress=52:54:00:12:34:56',
    '@@file /etc/netplan/50-cloud-init.yaml',
    'network:',
    '  ethernets:',
    '    eth0:',
    '      match:',
    '        macaddress: 52:54:00:12:34:56',
  ].join('\n');
  const r = readinessOf(out, AT);
  assert.ok(r.checked && !r.ready);
  const found = r.problems.map((p) => p.what);
  assert.equal(found.length, 8, found.join('\n'));
  assert.match(found[0] as string, /has no hv_netvsc \(/);
  assert.match(found[1] as string, /initrd\.img-6\.1\.0-28-amd64 lacks hv_storvsc:/);
  assert.match(found[2] as string, /root=\/dev\/vda1/);
  assert.match(found[3] as string, /device name \(\/dev\/vda1, \/dev\/sdb1\)/);
  assert.match(found[4] as string, /70-persistent-net\.rules binds/);
  assert.match(found[5] as string, /ifcfg-eth0 .*HWADDR=/);
  assert.match(found[6] as string, /10-lan\.network matches .*MACAddress=/);
  assert.match(found[7] as string, /50-cloud-init\.yaml matches .*macaddress:/);
  for (const p of r.problems) assert.ok(p.fix.length > 10, `a fix for: ${p.what}`);
  assert.match(r.problems[1]?.fix ?? '', /update-initramfs -u.*dracut -f/);
  const lines = readinessLines(r);
  assert.match(lines[0] as string, /^azure readiness: 8 problem\(s\) \(kernel 6\.1\.0-28-amd64/);
  assert.equal(lines.filter((l) => l.startsWith('    fix: ')).length, 8);
});

test('commented lines and files without MAC bindings are no problems; an unlisted initramfs is a note', () => {
  const out = [
    kernelHeader,
    modulesDep,
    '@@file /etc/fstab',
    '#/dev/vda1 / ext4 defaults 0 1',
    '@@file /etc/udev/rules.d/75-persistent-net-generator.rules',
    '# ATTR{address}=="…" examples only',
    '@@file /etc/sysconfig/network-scripts/ifcfg-eth0',
    'DEVICE=eth0',
    '#HWADDR=52:54:00:12:34:56',
    `@@unlisted /boot/initrd.img-${K}`,
  ].join('\n');
  const r = readinessOf(out, AT);
  assert.ok(r.checked);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.notes, [
    `/boot/initrd.img-${K} was not looked into (neither lsinitramfs nor lsinitrd in the guest)`,
  ]);
});

test('no kernel release in the output is "not checked" with the reason', () => {
  assert.deepEqual(readinessOf('sh: uname: not found\n', AT), {
    checked: false,
    checkedAt: AT,
    reason: 'the guest printed no kernel release (uname -r failed)',
  });
});
