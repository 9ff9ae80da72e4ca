// What `osr host add --libvirt` and discovery call on a process server: checkLibvirtHost (the URI
// answers, with the backup API) and discoverLibvirt (domains, disks, sizes, formats, whether
// changes can be tracked), against a real private libvirtd with two defined domains.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { checkLibvirtHost, discoverLibvirt, LibvirtHostError } from '../../lib/libvirt/host-check';
import { virshWithXml } from '../../lib/libvirt/virsh';
import { createQcow2 } from '../../lib/qemu/storage-daemon';
import { giveToDaemon, startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { testGuestDomainXml } from '../helpers/libvirt-vm';

const MiB = 1024 * 1024;
let daemon: LibvirtDaemon;

async function define(name: string, disks: Array<{ format: 'qcow2' | 'raw'; sizeBytes: number }>) {
  const files = [];
  for (const [i, d] of disks.entries()) {
    const file = path.join(daemon.dir, `${name}-${i}.${d.format}`);
    if (d.format === 'qcow2') await createQcow2(file, d.sizeBytes);
    else fs.writeFileSync(file, Buffer.alloc(d.sizeBytes));
    giveToDaemon(file);
    files.push({ target: `vd${String.fromCharCode(97 + i)}`, file, format: d.format });
  }
  const xml = testGuestDomainXml({
    name,
    disks: files,
    consoleLog: path.join(daemon.dir, `${name}.log`),
    guestSocket: path.join(daemon.dir, `${name}.sock`),
  });
  await virshWithXml(daemon.uri, ['define', '@dom'], { dom: xml });
  return files;
}

before(async () => {
  daemon = await startLibvirtDaemon();
});

after(async () => {
  await daemon?.stop();
});

test('checkLibvirtHost: a live libvirt with the backup API passes; a dead URI is refused with the fix', async () => {
  const facts = await checkLibvirtHost(daemon.uri);
  assert.match(facts.libvirtVersion, /^\d+\.\d+/);
  assert.match(facts.hypervisorVersion, /^\d+\.\d+/);
  assert.equal(facts.backupSupported, true);
  await assert.rejects(
    checkLibvirtHost(`qemu+unix:///session?socket=${daemon.dir}/none.sock`),
    (err: Error) =>
      err instanceof LibvirtHostError &&
      /does not answer .*none\.sock.*start libvirtd there/.test(err.message),
  );
});

test('discoverLibvirt lists every domain with its disks and whether its changes can be tracked', async () => {
  const web = await define('web', [
    { format: 'qcow2', sizeBytes: 8 * MiB },
    { format: 'raw', sizeBytes: 4 * MiB },
  ]);
  const legacy = await define('legacy', [{ format: 'raw', sizeBytes: 2 * MiB }]);
  const found = await discoverLibvirt(daemon.uri, 'kvm-1');
  assert.deepEqual(found.map((m) => m.name).sort(), ['legacy', 'web']);
  const w = found.find((m) => m.name === 'web')!;
  assert.equal(w.host, 'kvm-1');
  assert.equal(w.state, 'shut off');
  assert.deepEqual(w.disks, [
    { diskId: 'vda', sizeBytes: 8 * MiB, format: 'qcow2', location: web[0]!.file },
    { diskId: 'vdb', sizeBytes: 4 * MiB, format: 'raw', location: web[1]!.file },
  ]);
  assert.equal(w.changeTracking.possible, true);
  assert.match(w.changeTracking.reason ?? '', /vdb not qcow2: resynchronized by checksums/);
  const l = found.find((m) => m.name === 'legacy')!;
  assert.deepEqual(l.disks, [
    { diskId: 'vda', sizeBytes: 2 * MiB, format: 'raw', location: legacy[0]!.file },
  ]);
  assert.equal(l.changeTracking.possible, false);
  assert.match(l.changeTracking.reason ?? '', /not qcow2.*qemu-img convert -O qcow2/);
});
