// What the WAN benchmark runs inside the primary site (a Node process cannot change its own
// namespace, so each baseline's sender is a child started with `ip netns exec`):
//   send <host> <port> <seconds>        raw TCP: writes 1 MiB buffers for that long, then ends
//   upload-pages <connection string> <raw file> <extents.json> <disk bytes> <concurrency>
//                                       plain Put Page calls of the allocated bytes; prints the result as JSON
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import type { Extent } from '../disk-data';
import { uploadPagesCopy } from '../initial-sync';

async function send(host: string, port: number, seconds: number): Promise<void> {
  const chunk = randomBytes(1024 * 1024);
  const socket = net.connect(port, host);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  }
  await new Promise<void>((resolve) => socket.end(resolve));
}

async function main(): Promise<void> {
  const [what, ...args] = process.argv.slice(2);
  if (what === 'send') {
    const [host, port, seconds] = args;
    return send(host as string, Number(port), Number(seconds));
  }
  if (what === 'upload-pages') {
    const [connection, rawFile, extentsFile, diskBytes, concurrency] = args as string[];
    const extents = JSON.parse(fs.readFileSync(extentsFile as string, 'utf8')) as Extent[];
    const account = BlobServiceClient.fromConnectionString(connection as string);
    const result = await uploadPagesCopy(
      account,
      rawFile as string,
      extents,
      Number(diskBytes),
      Number(concurrency),
    );
    return void process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  throw new Error(`site-tool: unknown command ${what ?? '(none)'}; use send or upload-pages`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
