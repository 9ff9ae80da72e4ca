// The demo machine's workload: sequence-numbered records written through the machine's NBD
// export at a steady rate, forever (until SIGTERM). Run by `osr demo start`.
import { NbdClient } from '../../lib/qemu/nbd-client';
import { demoLayout, RecordWorkload } from './record-workload';

async function main(): Promise<void> {
  const [socket, exportName = 'disk0', rateText = '64'] = process.argv.slice(2);
  if (!socket) throw new Error('usage: demo-workload <nbd-socket> [export] [records-per-second]');
  const nbd = await NbdClient.connect({ socket, exportName });
  const workload = new RecordWorkload(nbd, demoLayout(nbd.size), 'demo');
  const rate = Number(rateText);
  let stopping = false;
  process.on('SIGTERM', () => (stopping = true));
  process.on('SIGINT', () => (stopping = true));
  const started = Date.now();
  while (!stopping && workload.acknowledged < workload.layout.slots - 1) {
    await workload.writeNext();
    const due = started + (workload.acknowledged / rate) * 1000;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    if (workload.acknowledged % (rate * 10) === 0)
      process.stdout.write(`${new Date().toISOString()} acknowledged ${workload.acknowledged} records\n`);
  }
  await nbd.flush();
  await nbd.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`demo workload failed: ${(err as Error).message}\n`);
  process.exit(1);
});
