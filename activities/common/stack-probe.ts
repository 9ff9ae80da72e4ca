// A round trip through storage from a worker of one role: proves that the worker polls its task
// queue and reaches the blob endpoint with working credentials.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { CONTAINERS, storageCredentialProblem, type BlobStorage } from '../../lib/azure/blob-client';

export interface ProbeResult {
  role: string;
  host: string;
  pid: number;
  bytes: number;
  roundTripMs: number;
}

export function createStackProbeActivity(role: string, blobService: BlobStorage) {
  return async function probeStorage(): Promise<ProbeResult> {
    try {
      return await roundTrip();
    } catch (err) {
      const problem = storageCredentialProblem(err);
      throw problem ? new Error(`${role} worker: ${problem}`) : err;
    }
  };

  async function roundTrip(): Promise<ProbeResult> {
    const started = performance.now();
    const container = blobService.getContainerClient(CONTAINERS.vault);
    await container.createIfNotExists();
    const payload = randomBytes(64 * 1024);
    const blob = container.getBlockBlobClient(
      `probes/${role}-${os.hostname()}-${process.pid}-${payload.readUInt32BE(0)}`,
    );
    await blob.uploadData(payload);
    const back = await blob.downloadToBuffer();
    await blob.deleteIfExists();
    if (!back.equals(payload))
      throw new Error(`storage probe from ${role}: the blob read back differs from what was written`);
    return {
      role,
      host: os.hostname(),
      pid: process.pid,
      bytes: payload.length,
      roundTripMs: Math.round(performance.now() - started),
    };
  }
}
