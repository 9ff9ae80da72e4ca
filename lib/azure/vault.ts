// The vault: configuration and the recovery-point catalog as JSON documents in the recovery
// site's storage (container osr-vault), so a control plane started anywhere after the loss of the
// primary site finds everything. Writes carry ETags: a writer that read an older version loses
// with a VaultConflictError instead of overwriting someone else's change.
import type { ContainerClient } from '@azure/storage-blob';
import { RestError } from '@azure/storage-blob';
import type {
  PointKind,
  ProtectedMachine,
  RecoveryPoint,
  ReplicationPolicy,
} from '../../shared/replication-types';

import { CONTAINERS, type BlobStorage } from './blob-client';
import { isVaultPath, vaultPath, vaultSegment } from '../../shared/names';
import { orderPoints } from '../../shared/point-order';

/** What retention and the metrics read of a point, from one listing (shared/point-order.ts orders it). */
export type PointSummary = Pick<RecoveryPoint, 'id' | 'instant' | 'kind' | 'cycle' | 'protection'> & {
  createdAt?: string;
};
import { decodeVaultDocument, encodeVaultDocument } from './vault-format';

export class VaultConflictError extends Error {
  override name = 'VaultConflictError';
}

export interface Versioned<T> {
  value: T;
  etag: string;
  /** Seconds since it was last written, by the storage service's own clock (its Last-Modified against its Date). */
  ageSeconds?: number;
}

export class Vault {
  private readonly container: ContainerClient;
  private ready: Promise<unknown> | undefined;

  constructor(blobService: BlobStorage) {
    this.container = blobService.getContainerClient(CONTAINERS.vault);
  }

  private ensure(): Promise<unknown> {
    this.ready ??= this.container.createIfNotExists();
    return this.ready;
  }

  async read<T>(name: string): Promise<Versioned<T> | undefined> {
    vaultPath(name);
    await this.ensure();
    try {
      const response = await this.container.getBlockBlobClient(name).download();
      const text = await streamToString(response.readableStreamBody);
      const [written, now] = [response.lastModified?.getTime(), response.date?.getTime()];
      return {
        value: decodeVaultDocument<T>(name, text),
        etag: response.etag ?? '',
        ageSeconds: written && now ? Math.max(0, Math.round((now - written) / 1000)) : undefined,
      };
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  /**
   * Writes a document. `etag` undefined: create only (fails if it exists); a string: replace only
   * that version; '*': create or replace unconditionally.
   */
  async write<T>(name: string, value: T, etag?: string, metadata?: Record<string, string>): Promise<string> {
    vaultPath(name);
    await this.ensure();
    const body = encodeVaultDocument(value);
    const conditions = etag === undefined ? { ifNoneMatch: '*' } : etag === '*' ? {} : { ifMatch: etag };
    try {
      const res = await this.container.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
        conditions,
        metadata,
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      return res.etag ?? '';
    } catch (err) {
      if (err instanceof RestError && (err.statusCode === 409 || err.statusCode === 412)) {
        throw new VaultConflictError(
          etag === undefined
            ? `${name} already exists in the vault`
            : `${name} was changed by someone else since it was read; read it again and retry`,
        );
      }
      throw err;
    }
  }

  /** Read-modify-write with ETag retry: `change` may run more than once. */
  async update<T>(name: string, change: (current: T | undefined) => T, attempts = 5): Promise<T> {
    for (let i = 0; ; i++) {
      const current = await this.read<T>(name);
      const next = change(current?.value);
      try {
        await this.write(name, next, current?.etag);
        return next;
      } catch (err) {
        if (!(err instanceof VaultConflictError) || i + 1 >= attempts) throw err;
      }
    }
  }

  async remove(name: string): Promise<void> {
    vaultPath(name);
    await this.ensure();
    await this.container.getBlockBlobClient(name).deleteIfExists();
  }

  /** Names of the documents under a prefix, in name order, without reading them. */
  async listNames(prefix: string): Promise<string[]> {
    vaultPath(prefix, { prefix: true });
    await this.ensure();
    const names: string[] = [];
    for await (const blob of this.container.listBlobsFlat({ prefix })) names.push(blob.name);
    return names;
  }

  /** Documents under a prefix with how long ago each was last written, by storage's clock (ageSeconds). */
  async listAged<T>(prefix: string): Promise<Array<{ value: T; ageSeconds?: number }>> {
    // A document stored under a name the guard refuses (not by OSR) is not read through it.
    const names = (await this.listNames(prefix)).filter(isVaultPath);
    const docs = await Promise.all(names.map((n) => this.read<T>(n)));
    return docs.filter((d): d is Versioned<T> => d !== undefined);
  }

  async list<T>(prefix: string): Promise<T[]> {
    return (await this.listAged<T>(prefix)).map((d) => d.value);
  }

  // Typed documents. Each name is one part of the document name: the guard refuses any that is not.
  static policyDoc = (name: string) => `policies/${vaultSegment('policy name', name)}.json`;
  static machineDoc = (name: string) => `machines/${vaultSegment('machine name', name)}.json`;
  static pointDoc = (machine: string, pointId: string) =>
    `${Vault.pointsPrefix(machine)}${vaultSegment('point id', pointId)}.json`;
  static pointsPrefix = (machine: string) => `points/${vaultSegment('machine name', machine)}/`;

  policies(): Promise<ReplicationPolicy[]> {
    return this.list<ReplicationPolicy>('policies/');
  }
  async policy(name: string): Promise<ReplicationPolicy | undefined> {
    return (await this.read<ReplicationPolicy>(Vault.policyDoc(name)))?.value;
  }
  machines(): Promise<ProtectedMachine[]> {
    return this.list<ProtectedMachine>('machines/');
  }
  async machine(name: string): Promise<ProtectedMachine | undefined> {
    return (await this.read<ProtectedMachine>(Vault.machineDoc(name)))?.value;
  }
  /**
   * A machine's points from one listing (their summary is kept as blob metadata by writePoint),
   * without reading each document: retention runs every cycle. Oldest first.
   */
  async pointSummaries(machine: string): Promise<PointSummary[]> {
    const prefix = Vault.pointsPrefix(machine);
    await this.ensure();
    const out: PointSummary[] = [];
    for await (const blob of this.container.listBlobsFlat({ prefix, includeMetadata: true })) {
      const m = blob.metadata ?? {};
      if (m.osrinstant && m.osrkind && m.osrcycle) {
        out.push({
          id: blob.name.slice(prefix.length, -'.json'.length),
          instant: m.osrinstant,
          kind: m.osrkind as PointKind,
          cycle: Number(m.osrcycle),
          ...(m.osrprotection ? { protection: m.osrprotection } : {}),
          // Point documents are written once: before osrcreated, storage's own time of that write.
          createdAt: m.osrcreated ?? blob.properties.createdOn?.toISOString(),
        });
      } else {
        const doc = (await this.read<RecoveryPoint>(blob.name))?.value;
        if (doc) {
          const { id, instant, kind, cycle, protection, createdAt } = doc;
          out.push({ id, instant, kind, cycle, createdAt, ...(protection ? { protection } : {}) });
        }
      }
    }
    return orderPoints(out);
  }

  /** Records a point (create only), with its summary as metadata for pointSummaries. */
  writePoint(point: RecoveryPoint): Promise<string> {
    return this.write(Vault.pointDoc(point.machine, point.id), point, undefined, {
      osrinstant: point.instant,
      osrkind: point.kind,
      osrcycle: String(point.cycle),
      osrcreated: point.createdAt,
      ...(point.protection ? { osrprotection: point.protection } : {}),
    });
  }

  /** A machine's recovery points, oldest first (shared/point-order.ts: never by the primary's clock). */
  async points(machine: string): Promise<RecoveryPoint[]> {
    return orderPoints(await this.list<RecoveryPoint>(Vault.pointsPrefix(machine)));
  }
}

async function streamToString(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stream) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
