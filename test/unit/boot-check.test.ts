// The boot check runs the operator's command with the recovered machine in its environment,
// retries the probe within its timeout, reports (never throws) failures, and stops what it started.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runBootCheck } from '../../activities/cloud-applier/boot-check';
import { pollFor } from '../helpers/poll';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-boot-'));
const base = {
  machine: 'web-1',
  pointId: 'p1',
  disks: ['/d/disk0.qcow2', '/d/disk1.qcow2'],
  blobs: ['b/disk0', 'b/disk1'],
};

test('passes once the probe succeeds, with the machine, point and disks in the environment', async () => {
  const env = path.join(dir, 'env.txt');
  const pidFile = path.join(dir, 'vm.pid');
  const result = await runBootCheck({
    ...base,
    check: {
      // A "VM" that comes up after a moment and keeps running.
      command: `echo "$OSR_MACHINE $OSR_POINT_ID $OSR_RECOVERED_DISKS $OSR_RECOVERED_BLOBS" > ${env}; sleep 1; touch ${dir}/up; sleep 60 & echo $! > ${pidFile}; wait`,
      probe: `test -e ${dir}/up`,
      probeTimeoutSeconds: 10,
    },
  });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.probeAttempts >= 2, 'the probe was retried until the machine was up');
  assert.equal(fs.readFileSync(env, 'utf8').trim(), 'web-1 p1 /d/disk0.qcow2,/d/disk1.qcow2 b/disk0,b/disk1');
  // What the command started is stopped with it.
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  // Stopped (the signal was sent before runBootCheck returned; the exit is awaited, not slept on).
  await pollFor(async () => (alive(pid) ? undefined : true), {
    timeoutMs: 10_000,
    intervalMs: 20,
    failure: () => new Error(`process ${pid} started by the boot command is stopped`),
  });
});

/** Running, not a zombie (a container's init may never reap orphans). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('a probe that never succeeds is reported after its timeout', async () => {
  const started = Date.now();
  const result = await runBootCheck({
    ...base,
    check: { command: 'exec sleep 60', probe: 'false', probeTimeoutSeconds: 2 },
  });
  assert.equal(result.ok, false);
  assert.match(result.reason ?? '', /probe did not succeed within 2 s/);
  assert.ok(Date.now() - started < 10_000);
});

test('a boot command that fails is reported with its exit code and output', async () => {
  const result = await runBootCheck({
    ...base,
    check: { command: 'echo cannot boot >&2; exit 3', probe: 'sleep 0.5; false', probeTimeoutSeconds: 10 },
  });
  assert.equal(result.ok, false);
  assert.match(result.reason ?? '', /exited 3/);
  assert.equal(result.commandExitCode, 3);
  assert.match(result.output, /cannot boot/);
});

test('a cancelled boot check stops the booted machine at once and throws the cancellation', async () => {
  const pidFile = path.join(dir, 'cancelled-vm.pid');
  const controller = new AbortController();
  const running = runBootCheck(
    {
      ...base,
      // A VM that never answers the probe: only the cancellation can end the check before 60 s.
      check: { command: `sleep 60 & echo $! > ${pidFile}; wait`, probe: 'false', probeTimeoutSeconds: 60 },
    },
    controller.signal,
  );
  const pid = await pollFor(async () => Number(fs.readFileSync(pidFile, 'utf8')) || undefined, {
    timeoutMs: 10_000,
    intervalMs: 20,
    failure: () => new Error('the boot command started its VM'),
  });
  controller.abort(new Error('recovery cancelled'));
  await assert.rejects(running, /recovery cancelled/);
  await pollFor(async () => (alive(pid) ? undefined : true), {
    timeoutMs: 10_000,
    intervalMs: 20,
    failure: () => new Error(`process ${pid} started by the boot command is stopped`),
  });
});
