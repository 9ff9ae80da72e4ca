// A `virsh` in front of the real one, for tests that must decide when the process server's
// `backup-begin` of one domain (a libvirt point's freeze) reaches libvirt: put `bin` first on the
// process server's PATH. While a hold is set for a domain, each of its `backup-begin` calls makes a
// FIFO in the gate's folder and waits on it; the helper sees the FIFO appear, waits until the
// hold's promise resolves, and writes a line to let the call on (or, when the promise resolves
// to 'fail', to make it fail as libvirt would, never reaching libvirt). Every other call runs at once.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface VirshGate {
  /** The folder to put first on the process server's PATH. */
  bin: string;
  /** Holds each `backup-begin` of `domain` until `until()` resolves (undefined: stop holding). */
  hold(domain: string | undefined, until?: () => Promise<void | 'fail'>): void;
  /** How many calls were held. */
  readonly held: number;
  close(): void;
}

export function startVirshGate(): VirshGate {
  const real = execFileSync('sh', ['-c', 'command -v virsh'], { encoding: 'utf8' }).trim();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-vgate-'));
  const bin = path.join(dir, 'bin');
  const waits = path.join(dir, 'waits');
  const armed = path.join(dir, 'armed');
  fs.mkdirSync(bin);
  fs.mkdirSync(waits);
  // OSR calls `virsh -q -c <uri> backup-begin --domain <domain> …` (lib/libvirt/backup-job.ts).
  fs.writeFileSync(
    path.join(bin, 'virsh'),
    [
      '#!/bin/sh',
      `if [ "$4" = backup-begin ] && [ -e '${armed}' ] && [ "$6" = "$(cat '${armed}')" ]; then`,
      `  fifo='${waits}'/held-$$-$(date +%s%N)`,
      '  mkfifo "$fifo" && read line < "$fifo"; rm -f "$fifo"',
      '  [ "$line" = go ] || { echo "error: failed at the test\'s gate" >&2; exit 1; }',
      'fi',
      `exec '${real}' "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  let until: () => Promise<void | 'fail'> = async () => undefined;
  let held = 0;
  const seen = new Set<string>();
  const letGo = (name: string) => {
    if (seen.has(name) || !name.startsWith('held-')) return;
    seen.add(name);
    held += 1;
    void until()
      .then((outcome) => fs.promises.writeFile(path.join(waits, name), `${outcome ?? 'go'}\n`))
      .catch(() => undefined);
  };
  const watcher = fs.watch(waits, () => {
    for (const name of fs.readdirSync(waits)) letGo(name);
  });
  return {
    bin,
    hold(domain, u) {
      until = u ?? (async () => undefined);
      if (domain) fs.writeFileSync(armed, domain);
      else fs.rmSync(armed, { force: true });
    },
    get held() {
      return held;
    },
    close() {
      watcher.close();
      fs.rmSync(armed, { force: true });
      for (const name of fs.readdirSync(waits)) {
        // A call still waiting goes on (the FIFO opened non-blocking only when someone reads it).
        try {
          const fd = fs.openSync(path.join(waits, name), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
          fs.writeSync(fd, 'go\n');
          fs.closeSync(fd);
        } catch {
          // nobody waits on it
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
