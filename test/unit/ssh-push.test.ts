// The verified push of a large file (lib/ssh/push.ts) against this machine's own sh, gzip,
// sha256sum, sync and mv: the session runs its commands locally (the integration tests run them
// in the agent guest over SSH). Both ways in (gzip'ed and SFTP's fallback), a file already there,
// and bytes that do not match are refused and never take the name.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileSha256, probeCommand, probeResult, pushVerified } from '../../lib/ssh/push';
import type { SshSession } from '../../lib/ssh/session';

/** A session whose commands run here; `put` copies, optionally changing the bytes on the way. */
function localSession(log: string[], corrupt = false): SshSession {
  return {
    hostKey: 'local',
    run: (command: string, _ms?: number, input?: Readable) =>
      new Promise((resolve) => {
        log.push(input ? 'run+input' : 'run');
        const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        if (input) input.pipe(child.stdin);
        else child.stdin.end();
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      }),
    put: async (files) => {
      log.push('put');
      for (const f of files) {
        fs.copyFileSync(f.local, f.remote);
        f.onBytes?.(fs.statSync(f.local).size / 2);
        if (corrupt) fs.appendFileSync(f.remote, 'x');
      }
    },
    close: () => undefined,
  };
}

function setup(): { dir: string; local: string; remote: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-push-'));
  const local = path.join(dir, 'source');
  // Compressible and not: text then random bytes, 3 MiB.
  fs.writeFileSync(local, Buffer.concat([Buffer.alloc(2 << 20, 'node '), randomBytes(1 << 20)]));
  fs.mkdirSync(path.join(dir, 'machine'));
  return { dir, local, remote: path.join(dir, 'machine', 'node') };
}

async function probe(ssh: SshSession, remote: string) {
  return probeResult((await ssh.run(probeCommand(remote))).stdout);
}

test('gzip there: the file arrives whole, executable, under its name, in one command; a second push sends nothing', async () => {
  const { dir, local, remote } = setup();
  const log: string[] = [];
  const ssh = localSession(log);
  const first = await probe(ssh, remote);
  assert.deepEqual(first, { gzip: true, sha256sum: true });
  const tenths: number[] = [];
  assert.equal(
    await pushVerified(
      ssh,
      (use) => use(ssh),
      { local, remote, mode: 0o755 },
      first,
      (p) => tenths.push(p),
    ),
    'gzip',
  );
  assert.deepEqual(log, ['run', 'run+input']);
  // Read in 64 KiB pieces, 3 MiB: each tenth is heard once, in order.
  assert.deepEqual(tenths, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
  assert.ok(fs.readFileSync(remote).equals(fs.readFileSync(local)));
  assert.equal(fs.statSync(remote).mode & 0o777, 0o755);
  assert.deepEqual(fs.readdirSync(path.dirname(remote)), ['node']);

  const again = await probe(ssh, remote);
  assert.equal(again.existing, await fileSha256(local));
  assert.equal(
    await pushVerified(ssh, (use) => use(ssh), { local, remote, mode: 0o755 }, again),
    'unchanged',
  );
  fs.rmSync(dir, { recursive: true });
});

test('no gzip there: SFTP, then the check in a fresh session; a changed copy is refused and removed', async () => {
  const { dir, local, remote } = setup();
  fs.writeFileSync(remote, 'the old node');
  const log: string[] = [];
  const freshLog: string[] = [];
  const bad = localSession(log, true);
  const noGzip = { ...(await probe(bad, remote)), gzip: false };
  log.length = 0;
  await assert.rejects(
    pushVerified(bad, (use) => use(localSession(freshLog)), { local, remote, mode: 0o755 }, noGzip),
    /node arrived with SHA-256 [0-9a-f]{64}, not [0-9a-f]{64}/,
  );
  assert.deepEqual([log, freshLog], [['put'], ['run']]);
  // The old file keeps its name; the bad copy is gone.
  assert.equal(fs.readFileSync(remote, 'utf8'), 'the old node');
  assert.deepEqual(fs.readdirSync(path.dirname(remote)), ['node']);

  const good = localSession(log);
  const tenths: number[] = [];
  assert.equal(
    await pushVerified(
      good,
      (use) => use(good),
      { local, remote, mode: 0o755 },
      noGzip,
      (p) => tenths.push(p),
    ),
    'sftp',
  );
  assert.deepEqual(tenths, [50]);
  assert.ok(fs.readFileSync(remote).equals(fs.readFileSync(local)));
  fs.rmSync(dir, { recursive: true });
});

test('a machine without sha256sum is refused before anything is sent', async () => {
  const { dir, local, remote } = setup();
  const log: string[] = [];
  await assert.rejects(
    pushVerified(
      localSession(log),
      (use) => use(localSession(log)),
      { local, remote, mode: 0o755 },
      {
        gzip: true,
        sha256sum: false,
      },
    ),
    /no sha256sum/,
  );
  assert.deepEqual(log, []);
  fs.rmSync(dir, { recursive: true });
});
