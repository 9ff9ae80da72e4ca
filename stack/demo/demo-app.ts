// The demo machine's "application", as a drill's boot check starts and probes it. `boot` opens the
// recovered disk (served over NBD by the materialized copy's storage daemon, beside the disk
// files in OSR_RECOVERED_DISKS), checks the workload's record log the way an application replays
// its journal (records 1..k present, none beyond a gap, none torn), and only then answers on a
// local socket, staying up as a machine would; `probe` asks that socket. A disk that does not hold
// a clean record log never answers, so the boot check fails: it cannot pass by accident.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { storageDaemonPaths } from '../../lib/qemu/storage-daemon';
import { decodeRecord, demoLayout, RECORD_BYTES, slotOf } from './record-workload';

/** Slots looked at past the first missing record: a later record there is a write-order violation. */
const LOOKAHEAD = 1024;

function socketPath(): string {
  const id = `${process.env.OSR_MACHINE ?? 'demo'}-${process.env.OSR_POINT_ID ?? 'point'}`;
  return path.join(os.tmpdir(), `osr-demo-app-${id.replace(/[^A-Za-z0-9-]/g, '')}.sock`.slice(0, 100));
}

async function replayJournal(): Promise<number> {
  const first = (process.env.OSR_RECOVERED_DISKS ?? '').split(',')[0];
  if (!first)
    throw new Error('OSR_RECOVERED_DISKS is empty: the drill materialized no disk (configure --materialize)');
  const socket = storageDaemonPaths(path.dirname(first)).nbdSocket;
  const exportName = path.basename(first).replace(/\.(qcow2|raw)$/, '');
  const nbd = await NbdClient.connect({ socket, exportName });
  try {
    const layout = demoLayout(nbd.size);
    const read = (seq: number) =>
      nbd.read(layout.baseOffset + slotOf(seq, layout) * RECORD_BYTES, RECORD_BYTES);
    let prefix = 0;
    while (prefix + 1 < layout.slots && decodeRecord(await read(prefix + 1)) === prefix + 1) prefix += 1;
    for (let seq = prefix + 2; seq < Math.min(layout.slots, prefix + 2 + LOOKAHEAD); seq++) {
      if (decodeRecord(await read(seq)) === seq)
        throw new Error(
          `record ${seq} is on the disk but record ${prefix + 1} is not: the journal is not a prefix`,
        );
    }
    if (prefix === 0) throw new Error('no record of the demo workload on the recovered disk');
    return prefix;
  } finally {
    await nbd.close();
  }
}

async function boot(): Promise<void> {
  const records = await replayJournal();
  const file = socketPath();
  fs.rmSync(file, { force: true });
  const server = net.createServer((c) => c.end(`up: journal replayed, ${records} records\n`));
  server.listen(file);
  process.stdout.write(`demo application up: ${records} records replayed; answering on ${file}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function probe(): Promise<void> {
  const answer = await new Promise<string>((resolve, reject) => {
    const c = net.createConnection(socketPath());
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
  process.stdout.write(answer);
  if (!answer.startsWith('up')) process.exit(1);
}

if (require.main === module) {
  const mode = process.argv[2];
  (mode === 'boot'
    ? boot()
    : mode === 'probe'
      ? probe()
      : Promise.reject(new Error('usage: demo-app boot|probe'))
  ).catch((err: Error) => {
    process.stderr.write(`demo application: ${err.message}\n`);
    process.exit(1);
  });
}
