// What agent-recovery.test.ts runs in and around its guest: the record workload and freeze script
// it installs, the records a point must hold, and the boot check of a recovered agent machine (the
// agent test guest's kernel and initramfs, its root in RAM, with the recovered disks through the
// storage daemon's NBD exports as its two data disks; the probe logs in over SSH and hashes them).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { freePort } from '../../lib/process/ports';
import type { BootCheck } from '../../shared/recovery-types';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { agentGuestFiles, type AgentGuest } from './agent-guest';
import { sshKeyPair } from './ssh-key';
import { chooseAccel, recordsIn } from './test-vm';
import type { ControlContext } from '../../operations/context';
import { recoveryStatusQuery } from '../../shared/contracts/recovery-job';
import { pollFor } from './poll';

/** Record n is written at sector RECORDS_BASE + n of vdb. */
export const RECORDS_BASE = 2048;

/** Records written with fsync through the agent's stack; /tmp/acked holds the newest acknowledged. */
export const RECORDS = `n=0
while [ ! -e /tmp/stop ]; do
  n=$((n + 1))
  printf 'OSR-RECORD %010d agent\\n' $n | dd of=/dev/mapper/osr-vdb bs=512 seek=$((${RECORDS_BASE} + n)) count=1 conv=sync,fsync 2>/dev/null || exit 1
  echo $n > /tmp/acked.new && mv /tmp/acked.new /tmp/acked
  echo $n > /data/last; [ $((n % 8)) = 0 ] && sync
done
touch /tmp/stopped`;

/** The machine's own freeze script: writes which point it quiesces for into the filesystem. */
export const MARKER_SCRIPT = `#!/bin/sh
case "$1" in
  freeze) echo "$OSR_POINT_IN_TIME" > /data/osr-marker && sync ;;
  thaw) echo "thaw $OSR_POINT_IN_TIME" >> /var/log/freeze.log ;;
esac`;

/** The records of a vdb image, each at its own sector; they must be 1..k. Returns k. */
export function recordCount(image: Buffer): number {
  const found = recordsIn(image);
  for (const { sector, record } of found)
    assert.equal(sector, RECORDS_BASE + record, `record ${record} at ${sector}`);
  const numbers = found.map((f) => f.record).sort((a, b) => a - b);
  numbers.forEach((n, i) => assert.equal(n, i + 1, `records are not 1..k (${numbers.join(',')})`));
  return numbers.length;
}

/** Polls a running failover's status until `step` is done; fails at once if the failover failed. */
export async function untilStep(ctx: ControlContext, workflowId: string, step: string) {
  const handle = (await ctx.client()).workflow.getHandle(workflowId);
  const status = await pollFor(
    async () => {
      const st = await handle.query(recoveryStatusQuery);
      const done = st.steps.some((x) => x.name === step && x.state === 'done');
      return done || st.state === 'failed' ? st : undefined;
    },
    {
      timeoutMs: 240_000,
      intervalMs: 1000,
      failure: (last) => new Error(`step ${step} not done within 240 s: ${String(last)}`),
    },
  );
  assert.notEqual(status.state, 'failed', JSON.stringify(status));
  return status;
}

/** The boot command and probe of a guest named `name`; its files (key, console log) go in `work`. */
export async function agentBootCheck(work: string, name: string): Promise<BootCheck> {
  const { kernel, initrd, hostKeyLine } = agentGuestFiles();
  const keyFile = path.join(work, 'id_ed25519');
  const pubFile = `${keyFile}.pub`;
  if (!fs.existsSync(pubFile)) {
    const keys = sshKeyPair();
    fs.writeFileSync(keyFile, keys.private, { mode: 0o600 });
    fs.writeFileSync(pubFile, keys.public.split(' ')[1] as string);
  }
  const pub = fs.readFileSync(pubFile, 'utf8');
  const port = await freePort();
  const knownHosts = path.join(work, `known_hosts-${name}`);
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKeyLine}\n`);
  const accel = chooseAccel() === 'kvm' ? '-accel kvm -accel tcg' : '-accel tcg';
  const command = [
    `exec qemu-system-x86_64 ${accel} -nodefaults -no-user-config -display none -m 256 -smp 1`,
    `-kernel ${kernel} -initrd ${initrd}`,
    `-append "console=ttyS0 panic=-1 quiet osr.disks=2 osr.hostname=${name} osr.sshkey=${pub}"`,
    `-serial file:${path.join(work, `${name}-console.log`)}`,
    `-netdev user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:22 -device virtio-net-pci,netdev=n0`,
    '-drive "file=${OSR_RECOVERED_NBD%%,*},format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0',
    '-drive "file=${OSR_RECOVERED_NBD#*,},format=raw,if=none,id=d1" -device virtio-blk-pci,drive=d1',
  ].join(' ');
  const probe = `ssh -F /dev/null -i ${keyFile} -p ${port} -o BatchMode=yes -o ConnectTimeout=10 -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes root@127.0.0.1 'echo "up: $(hostname)"; sha256sum /dev/vda /dev/vdb'`;
  return { command, probe, probeTimeoutSeconds: 400, commandTimeoutSeconds: 500 };
}

/** The booted guest, as its probe saw it: its name and the SHA-256 of its two disks. */
export function probed(status: RecoveryStatus | undefined): { host: string; vda: string; vdb: string } {
  const check = status?.bootCheck;
  assert.equal(check?.ok, true, `boot check: ${JSON.stringify(check)}`);
  const out = check?.output ?? '';
  return {
    host: /up: (\S+)/.exec(out)?.[1] ?? '',
    vda: /([0-9a-f]{64}) {2}\/dev\/vda/.exec(out)?.[1] ?? '',
    vdb: /([0-9a-f]{64}) {2}\/dev\/vdb/.exec(out)?.[1] ?? '',
  };
}

/** SHA-256 of each named disk of the guest, read on the machine. */
export async function diskSums(guest: AgentGuest, ...disks: string[]): Promise<string[]> {
  const r = await guest.ssh(`sha256sum ${disks.map((d) => `/dev/${d}`).join(' ')}`, 120_000);
  assert.equal(r.code, 0, r.stderr);
  return disks.map((d) => new RegExp(`([0-9a-f]{64}) +/dev/${d}`).exec(r.stdout)?.[1] ?? `no sum of ${d}`);
}

/**
 * The bytes of a disk of the guest (gzipped on the machine: the test disks are mostly zeros). The
 * page cache goes first: writes made through a device-mapper device over the disk bypass the
 * disk's own cache, which a device-mapper table keeps alive, so cached pages may be older.
 */
export async function diskImage(guest: AgentGuest, disk: string): Promise<Buffer> {
  const r = await guest.ssh(
    `sync; echo 3 > /proc/sys/vm/drop_caches; gzip -c /dev/${disk} | base64`,
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  return gunzipSync(Buffer.from(r.stdout, 'base64'));
}
