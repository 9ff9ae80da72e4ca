// `osr protect --host --domain` refuses what cannot work, before anything is started or recorded:
// a libvirt that does not answer, a domain it does not have, a domain without a disk libvirt can
// track (raw only), and half-given options. Against a real private libvirtd.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ControlContext } from '../../operations/context';
import { storeHost } from '../../operations/hosts';
import * as machines from '../../operations/machines';
import { virshWithXml } from '../../lib/libvirt/virsh';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { assertRefused, cliFor } from '../helpers/cli';
import { giveToDaemon, startLibvirtDaemon, type LibvirtDaemon } from '../helpers/libvirt-daemon';
import { testGuestDomainXml } from '../helpers/libvirt-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';
import fs from 'node:fs';
import path from 'node:path';

let bed: Testbed;
let daemon: LibvirtDaemon;
const osr = cliFor(() => bed.stack.env);

before(async () => {
  daemon = await startLibvirtDaemon();
  bed = await startTestbed({
    processServerEnv: async (stack) => {
      const ctx = new ControlContext(stack.config);
      const site = stack.config.site;
      await storeHost(ctx, { name: 'good', site, connection: { kind: 'libvirt', uri: daemon.uri } });
      await storeHost(ctx, {
        name: 'dead',
        site,
        connection: { kind: 'libvirt', uri: `qemu+unix:///session?socket=${daemon.dir}/no-such.sock` },
      });
      await ctx.close();
      return { OSR_PROCESS_SERVER_HOSTS: 'good,dead' };
    },
  });
  // A defined (not started) domain whose only disk is raw.
  const raw = path.join(daemon.dir, 'raw.img');
  fs.writeFileSync(raw, Buffer.alloc(4 * 1024 * 1024));
  giveToDaemon(raw);
  const xml = testGuestDomainXml({
    name: 'rawonly',
    disks: [{ target: 'vda', file: raw, format: 'raw' }],
    consoleLog: path.join(daemon.dir, 'rawonly.log'),
    guestSocket: path.join(daemon.dir, 'rawonly.sock'),
  });
  await virshWithXml(daemon.uri, ['define', '@dom'], { dom: xml });
});

after(async () => {
  await daemon?.stop();
  await bed?.stop();
});

/** Nothing half-registered: no vault document, no protection workflow. */
async function assertNothingRecorded(name: string): Promise<void> {
  assert.equal(await bed.ctx.vault.machine(name), undefined, `${name} is not in the vault`);
  const handle = (await bed.ctx.client()).workflow.getHandle(protectWorkflowId(name));
  await assert.rejects(handle.describe(), /not found/i, `no protection workflow for ${name}`);
}

test('a libvirt that does not answer: refused with libvirt’s reason and the fix', async () => {
  await assert.rejects(
    machines.protect(bed.ctx, { name: 'm-dead', host: 'dead', domain: 'x', policy: 'manual' }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'invalid');
      assert.match(err.message, /does not answer \(.*no-such\.sock.*\): start libvirtd there/);
      assert.match(err.message, /Nothing was started/);
      return true;
    },
  );
  await assertNothingRecorded('m-dead');
});

test('an unknown domain: refused, naming how to list the domains (CLI exit 2)', async () => {
  const res = await osr(['protect', 'm-nodom', '--host', 'good', '--domain', 'nosuch', '--policy', 'manual']);
  assertRefused(res, 2, /has no domain nosuch: check the name with `virsh -c .* list --all`/);
  await assertNothingRecorded('m-nodom');
});

test('a domain without a trackable disk: refused, saying to convert it to qcow2', async () => {
  const res = await osr(['protect', 'm-raw', '--host', 'good', '--domain', 'rawonly', '--policy', 'manual']);
  assertRefused(
    res,
    2,
    /rawonly cannot be protected: its disks \(vda: raw\) are not qcow2.*qemu-img convert -O qcow2/,
  );
  await assertNothingRecorded('m-raw');
});

test('an unknown host, or --host without --domain: refused with the fix', async () => {
  assertRefused(
    await osr(['protect', 'm-x', '--host', 'nohost', '--domain', 'd']),
    4,
    /no host named nohost; known hosts: .*osr host add nohost --libvirt/,
  );
  assertRefused(await osr(['protect', 'm-x', '--host', 'good']), 2, /--domain is missing/);
  assertRefused(
    await osr(['protect', 'm-x', '--qmp', '/x', '--host', 'good', '--domain', 'd']),
    2,
    /not both/,
  );
  await assertNothingRecorded('m-x');
});
