// The health rules of shared/machine-health.ts (written down in docs/operations.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Alert } from '../../shared/contracts/protect-machine';
import { DEFAULT_POLICY } from '../../shared/policy';
import { machineHealth, type HealthInput } from '../../shared/machine-health';

const now = Date.parse('2026-12-05T12:00:00Z');
const ago = (s: number) => new Date(now - s * 1000).toISOString();
const policy = { ...DEFAULT_POLICY, rpoThresholdSeconds: 100 };
const base: HealthInput = {
  state: 'protected',
  policy,
  lastPoint: { id: 'p', instant: ago(10), kind: 'crash' },
  alerts: [],
  protectedSince: ago(10_000),
};
const alert = (kind: Alert['kind'], severity: Alert['severity']): Alert => ({
  id: `m-${kind}`,
  at: ago(5),
  kind,
  severity,
  message: `${kind} happened`,
});

test('a fresh point and no alert is healthy', () => {
  assert.deepEqual(machineHealth(base, now), { level: 'healthy', reasons: [] });
});

test('RPO past the threshold is a warning, past twice it critical; rpo-exceeded is not counted twice', () => {
  const late = { ...base, lastPoint: { id: 'p', instant: ago(150), kind: 'crash' as const } };
  const rpoAlert = alert('rpo-exceeded', 'critical');
  assert.deepEqual(machineHealth({ ...late, alerts: [rpoAlert] }, now), {
    level: 'warning',
    reasons: ['RPO 150 s is past the threshold of 100 s'],
  });
  const lost = {
    ...base,
    lastPoint: { id: 'p', instant: ago(201), kind: 'crash' as const },
    alerts: [rpoAlert],
  };
  const h = machineHealth(lost, now);
  assert.equal(h.level, 'critical');
  assert.deepEqual(h.reasons, ['no recovery point for 201 s: more than 2× the RPO threshold of 100 s']);
});

test('no point yet: healthy within the threshold, warning past it, critical past twice it', () => {
  const first = { ...base, state: 'initial-sync' as const, lastPoint: undefined };
  assert.equal(machineHealth({ ...first, protectedSince: ago(50) }, now).level, 'healthy');
  assert.equal(machineHealth({ ...first, protectedSince: ago(150) }, now).level, 'warning');
  assert.match(
    machineHealth({ ...first, protectedSince: ago(250) }, now).reasons[0] ?? '',
    /no recovery point at all 250 s/,
  );
});

test('an unreachable source is critical; other failing cycles a warning, their alerts folded in', () => {
  const failing = { since: ago(30), failures: 3, reason: 'no QMP socket', sourceUnreachable: true };
  const down = machineHealth(
    { ...base, failing, alerts: [alert('source-unreachable', 'critical'), alert('cycle-failed', 'warning')] },
    now,
  );
  assert.equal(down.level, 'critical');
  assert.deepEqual(down.reasons, [`source unreachable since ${ago(30)} (3 failed cycle(s)): no QMP socket`]);
  const slow = machineHealth(
    {
      ...base,
      failing: { ...failing, sourceUnreachable: false },
      alerts: [alert('cycle-failed', 'warning')],
    },
    now,
  );
  assert.deepEqual(slow, {
    level: 'warning',
    reasons: [`3 cycle(s) failed in a row since ${ago(30)}: no QMP socket`],
  });
});

test('alerts count by severity: resync-needed warns, a vanished disk or a failed group cut is critical; paused warns', () => {
  assert.equal(machineHealth({ ...base, alerts: [alert('resync-needed', 'warning')] }, now).level, 'warning');
  assert.equal(
    machineHealth({ ...base, alerts: [alert('disk-vanished', 'critical')] }, now).level,
    'critical',
  );
  assert.equal(
    machineHealth({ ...base, alerts: [alert('group-cut-failed', 'critical')] }, now).level,
    'critical',
  );
  assert.equal(machineHealth({ ...base, state: 'paused' }, now).level, 'warning');
});

test('replication-resumed is news, not a problem: a machine with only it is healthy', () => {
  assert.deepEqual(machineHealth({ ...base, alerts: [alert('replication-resumed', 'warning')] }, now), {
    level: 'healthy',
    reasons: [],
  });
});
