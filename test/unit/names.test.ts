// The name checker (one check per noun) and the vault's guard under its path builders.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failbackDocs } from '../../shared/failback-types';
import { groupDocs } from '../../shared/group-types';
import {
  checkName,
  checkPointSelector,
  isName,
  nameProblem,
  vaultPath,
  vaultSegment,
} from '../../shared/names';
import { OperationError } from '../../operations/context';
import { planDoc } from '../../shared/plan-types';
import { recoveryDocs } from '../../shared/recovery-types';
import { Vault } from '../../lib/azure/vault';

const BAD = [
  '../policies/demo',
  '../../etc',
  '..',
  '.',
  '',
  'a/b',
  'a\\b',
  'A',
  '-a',
  'a_b',
  'a.b',
  'a%2Fb',
  'a b',
  'a\nb',
  'a\u0000b',
  'a'.repeat(64),
];

/** The refusal `fn` throws: an OperationError 'invalid' whose message matches. */
function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OperationError, `an OperationError, got ${String(err)}`);
    assert.equal(err.code, 'invalid');
    assert.match(err.message, message);
    return true;
  });
}

test('machine, policy, plan and group names: lower-case letters, digits and dashes, at most 63', () => {
  for (const kind of ['machine', 'policy', 'plan', 'group'] as const) {
    for (const good of ['a', 'web-1', '0', 'a'.repeat(63), 'demo-web-1']) {
      assert.equal(checkName(kind, good), good);
      assert.equal(nameProblem(kind, good), undefined);
    }
    for (const bad of BAD) {
      assert.equal(isName(kind, bad), false, `${kind} ${JSON.stringify(bad)}`);
      refused(() => checkName(kind, bad), new RegExp(`^${kind} name ".*" is not valid: `));
    }
    assert.equal(isName(kind, 42), false);
    assert.equal(isName(kind, undefined), false);
  }
  // The words protect always used, now everybody's.
  assert.equal(
    nameProblem('machine', '../x'),
    'machine name "../x" is not valid: use lower-case letters, digits and dashes (at most 63)',
  );
  assert.equal(
    nameProblem('policy', '../policies/demo'),
    'policy name "../policies/demo" is not valid: use lower-case letters, digits and dashes (at most 63)',
  );
});

test('a refused name is shown escaped and cut short: no raw control characters, no endless echo', () => {
  assert.equal(
    nameProblem('machine', 'a\nb\u0000'),
    'machine name "a\\nb\\u0000" is not valid: use lower-case letters, digits and dashes (at most 63)',
  );
  const long = nameProblem('plan', 'x'.repeat(5000)) as string;
  assert.ok(long.length < 250, long);
  assert.match(long, /^plan name "x{80}…" is not valid/);
});

test('point, group point and job ids: the ids OSR generates pass, paths do not', () => {
  for (const id of ['20261125T080000Z-c3', '20261125T080000Z-g12', 'no-such-point'])
    assert.equal(checkName('point', id), id);
  assert.equal(checkName('group-point', '20261125T080000Z-g12'), '20261125T080000Z-g12');
  for (const job of [
    '20261125T080000000Z',
    'drill/web-1/20261125T080000000Z',
    'plan/p1/failover/20261125T080000000Z',
    'plan/p1/failback/20261125T080000000Z',
    'protect/web-1',
    'bi1',
  ])
    assert.equal(checkName('job', job), job);
  for (const bad of ['../policies/demo', '../../etc', '..', '', 'a//b', '/a', 'a/', 'a/../b', 'a\nb', 'a.b'])
    refused(() => checkName('job', bad), /^job id ".*" is not valid: use a job id or workflow id/);
  for (const bad of ['../x', '..', '', 'a/b', 'a.b'])
    refused(() => checkName('point', bad), /^point id ".*" is not valid: .*osr points <machine>/);
  refused(() => checkName('group-point', '../x'), /^group point id "\.\.\/x" is not valid/);
});

test('point selectors: latest, latest-app, ISO times, group points and point ids; names inside are checked', () => {
  for (const ok of [
    'latest',
    'latest-app',
    '2026-11-25T08:00:00Z',
    '2026-11-25T08:00:00.123+01:00',
    'group:g1',
    'group:g1/20261125T080000Z-g3',
    '20261125T080000Z-c3',
  ])
    assert.equal(checkPointSelector(ok), ok);
  refused(
    () => checkPointSelector('../policies/demo'),
    /^point "\.\.\/policies\/demo" is not valid: use latest/,
  );
  refused(() => checkPointSelector('2026-11-25T../../x'), /^point ".*" is not valid/);
  // group:<group>/<id>: the group is what comes before the first "/".
  refused(() => checkPointSelector('group:../policies'), /^group name "\.\." is not valid/);
  refused(() => checkPointSelector('group:a%2Fb'), /^group name "a%2Fb" is not valid/);
  refused(() => checkPointSelector('group:g1/../../x'), /^group point id "\.\.\/\.\.\/x" is not valid/);
  refused(() => checkPointSelector('group:'), /^group name "" is not valid/);
  refused(() => checkPointSelector(7), /^point 7 is not valid/);
});

test('the vault guard refuses a part that could reach another document, and leaves valid paths as they were', () => {
  // Valid names build the same paths as before the guard.
  assert.equal(Vault.machineDoc('web-1'), 'machines/web-1.json');
  assert.equal(Vault.policyDoc('default'), 'policies/default.json');
  assert.equal(Vault.pointDoc('web-1', '20261125T080000Z-c3'), 'points/web-1/20261125T080000Z-c3.json');
  assert.equal(Vault.pointsPrefix('web-1'), 'points/web-1/');
  assert.equal(planDoc('p1'), 'plans/p1.json');
  assert.equal(groupDocs.group('g1'), 'groups/g1.json');
  assert.equal(groupDocs.points('g1'), 'group-points/g1/');
  assert.equal(groupDocs.point('g1', '20261125T080000Z-g3'), 'group-points/g1/20261125T080000Z-g3.json');
  assert.equal(recoveryDocs.settings('web-1'), 'recovery-settings/web-1.json');
  assert.equal(
    recoveryDocs.recovered('web-1', '20261125T080000000Z'),
    'recovered/web-1/20261125T080000000Z.json',
  );
  assert.equal(recoveryDocs.failoverLock('web-1'), 'failover-locks/web-1.json');
  assert.equal(failbackDocs.record('web-1'), 'failback/web-1.json');
  // Names the workers make (reverse replication) are not user names but are valid parts.
  assert.equal(vaultSegment('machine name', 'web-1.reverse'), 'web-1.reverse');

  const builders: Array<(bad: string) => string> = [
    (b) => Vault.machineDoc(b),
    (b) => Vault.policyDoc(b),
    (b) => Vault.pointDoc(b, 'p1'),
    (b) => Vault.pointDoc('web-1', b),
    (b) => Vault.pointsPrefix(b),
    (b) => planDoc(b),
    (b) => groupDocs.group(b),
    (b) => groupDocs.points(b),
    (b) => groupDocs.point('g1', b),
    (b) => recoveryDocs.settings(b),
    (b) => recoveryDocs.recovered(b, 'j1'),
    (b) => recoveryDocs.recovered('web-1', b),
    (b) => recoveryDocs.failoverLock(b),
    (b) => failbackDocs.record(b),
  ];
  for (const bad of ['../policies/demo', '..', '.', '', 'a/b', 'a\\b', 'a\u0001b', 'a%2Fb', 'a?b', 'a#b'])
    for (const build of builders) refused(() => build(bad), /cannot be part of a vault document name: /);

  // And the whole document name, at read, write, remove and list.
  for (const ok of ['machines/web-1.json', 'audit/2026-11-25/20261125T080000000Z-0a1b2c3d.json'])
    assert.equal(vaultPath(ok), ok);
  for (const prefix of ['points/web-1/', 'policies/', ''])
    assert.equal(vaultPath(prefix, { prefix: true }), prefix);
  for (const bad of ['machines/../policies/demo.json', 'a//b.json', '/a.json', 'a/./b', 'points/x/', 'a\nb'])
    refused(() => vaultPath(bad), /^vault document name ".*" is not valid: /);
  refused(() => vaultPath('points/../', { prefix: true }), /is not valid/);
});
