// What OSR reads of a remote libvirt URI to log in with its own ssh as virsh does, which URIs it
// refuses (host-key checking off, a known_hosts= the transport ignores, a remote URI not over
// SSH), and how ssh's failures are sorted into what an operator can act on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { libvirtUriProblem, remoteLibvirt } from '../../lib/libvirt/remote-host';
import { classifySshFailure, sshOptions } from '../../lib/ssh/openssh';

test('local URIs are not remote; SSH ones give user, host, port, key and known_hosts', () => {
  for (const local of ['qemu:///system', 'qemu:///session', 'qemu+unix:///session?socket=/run/x.sock'])
    assert.equal(remoteLibvirt(local), undefined, local);
  assert.deepEqual(
    remoteLibvirt('qemu+libssh://root@kvm1.example.net:2222/system?keyfile=/k&known_hosts=/kh'),
    {
      transport: 'libssh',
      host: 'kvm1.example.net',
      port: 2222,
      user: 'root',
      keyFile: '/k',
      knownHosts: '/kh',
    },
  );
  assert.deepEqual(remoteLibvirt('qemu+ssh://[fd00::7]/system'), { transport: 'ssh', host: 'fd00::7' });
});

test('URIs OSR can use pass; the rest are refused with the fix', () => {
  for (const ok of [
    'qemu:///system',
    'qemu+unix:///session?socket=/run/x.sock',
    'qemu+ssh://root@kvm1/system?keyfile=/root/.ssh/osr',
    'qemu+libssh://root@kvm1:2222/system?keyfile=/k&known_hosts=/etc/osr/known_hosts',
    'qemu+libssh2://root@kvm1/system?known_hosts=/kh&known_hosts_verify=normal',
  ])
    assert.equal(libvirtUriProblem(ok), undefined, ok);
  const refused: Array<[string, RegExp]> = [
    ['system', /not a libvirt URI/],
    ['qemu+ssh://root@kvm1/system?no_verify=1', /turns host-key checking off/],
    ['qemu+libssh://root@kvm1/system?known_hosts_verify=auto', /turns host-key checking off/],
    ['qemu+libssh://root@kvm1/system?known_hosts_verify=ignore', /turns host-key checking off/],
    ['qemu+ssh://root@kvm1/system?known_hosts=/kh', /ignores known_hosts=: use qemu\+libssh:\/\/kvm1/],
    ['qemu+libssh://root@kvm1/system?keyfile=id_osr', /keyfile=id_osr must be an absolute path/],
    ['qemu://kvm1/system', /over tls, .*use qemu\+ssh:\/\/<user>@kvm1\/system/],
    ['qemu+tcp://kvm1/system', /over tcp/],
  ];
  for (const [uri, message] of refused) assert.match(libvirtUriProblem(uri) ?? '', message, uri);
});

test("ssh's options never loosen host-key checking", () => {
  const args = sshOptions({ host: 'kvm1', port: 2222, user: 'root', keyFile: '/k', knownHosts: '/kh' });
  assert.ok(args.join(' ').includes('StrictHostKeyChecking=yes'));
  assert.ok(args.join(' ').includes('BatchMode=yes'));
  assert.ok(args.join(' ').includes('UserKnownHostsFile="/kh"'));
  assert.deepEqual(args.slice(0, 4), ['-p', '2222', '-l', 'root']);
});

test("ssh's failures are sorted into unknown key, changed key, refused login, unreachable", () => {
  const cases: Array<[string, string]> = [
    [
      'No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n',
      'host-key-unknown',
    ],
    [
      '@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@\nHost key verification failed.\n',
      'host-key-changed',
    ],
    ['root@kvm1: Permission denied (publickey).\n', 'auth'],
    ['ssh: connect to host kvm1 port 22: Connection refused\n', 'unreachable'],
    ['ssh: Could not resolve hostname kvm9: Name or service not known\n', 'unreachable'],
    ['something else\n', 'other'],
  ];
  for (const [stderr, reason] of cases) assert.equal(classifySshFailure(stderr).reason, reason, stderr);
});
