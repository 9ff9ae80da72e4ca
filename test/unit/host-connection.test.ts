// What `osr host add` and POST /v1/hosts accept before asking the host's process server anything:
// connections put in their stored form, and bad ones refused with the fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeFingerprint } from '../../lib/vsphere/pinned-tls';
import { checkConnection } from '../../operations/host-admin';
import { OperationError } from '../../operations/context';
import { hostProcessServerQueue, machineProcessServerQueue } from '../../shared/task-queues';

const FP = 'AB:'.repeat(31) + 'CD';

test('fingerprints: colons, case and a sha256 prefix are accepted; anything else is not', () => {
  assert.equal(normalizeFingerprint(FP.toLowerCase()), FP);
  assert.equal(normalizeFingerprint(FP.replace(/:/g, '')), FP);
  assert.equal(normalizeFingerprint(`sha256:${FP}`), FP);
  assert.equal(normalizeFingerprint(FP.slice(3)), undefined, 'too short');
  assert.equal(normalizeFingerprint('zz'.repeat(32)), undefined, 'not hex');
});

test('a vCenter connection: https only, /sdk by default, an absolute password file, a valid pin', () => {
  const vc = { kind: 'vcenter' as const, url: 'https://vc1.example', user: 'r', passwordFile: '/etc/osr/pw' };
  assert.deepEqual(checkConnection({ ...vc, thumbprint: FP.toLowerCase() }), {
    ...vc,
    url: 'https://vc1.example/sdk',
    thumbprint: FP,
  });
  const refused = (c: object, message: RegExp) =>
    assert.throws(
      () => checkConnection(c as never),
      (e: unknown) => e instanceof OperationError && e.code === 'invalid' && message.test(e.message),
    );
  refused({ ...vc, url: 'http://vc1/sdk' }, /must be an https:\/\/ URL/);
  refused({ ...vc, url: 'vc1' }, /is not a URL/);
  refused({ ...vc, url: 'https://u:p@vc1/sdk' }, /must not carry a user or password/);
  refused({ ...vc, passwordFile: 'pw' }, /absolute path/);
  refused({ ...vc, thumbprint: '12:34' }, /not a SHA-256 fingerprint/);
  refused({ kind: 'sockets', dir: 'run/qemu' }, /absolute directory/);
  refused({ kind: 'libvirt', uri: 'system' }, /not a libvirt URI/);
  refused({ kind: 'esx' }, /unknown host kind/);
  assert.deepEqual(checkConnection({ kind: 'sockets', dir: '/run//qemu/' }), {
    kind: 'sockets',
    dir: '/run/qemu/',
  });
});

test("a machine's process-server queue: its host's when it has one, else its site's", () => {
  assert.equal(machineProcessServerQueue({ site: 'primary', host: 'kvm1' }), hostProcessServerQueue('kvm1'));
  assert.equal(machineProcessServerQueue({ site: 'primary' }), 'osr-process-server-primary');
});
