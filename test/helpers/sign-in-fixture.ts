// What the storage sign-in tests share: a self-signed certificate for Azurite over HTTPS, a
// stand-in for the App Service managed-identity endpoint (what DefaultAzureCredential asks for a
// token), container SAS URLs per role made from the account key, the protect → point → drill flow
// each way of signing in must carry, and a search for secrets in everything OSR left behind.
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential,
  type BlobServiceClient,
} from '@azure/storage-blob';
import { AZURITE_ACCOUNT, AZURITE_KEY, CONTAINERS } from '../../lib/azure/blob-client';
import {
  ROLE_GRANTS,
  STORAGE_ROLES,
  type ContainerKey,
  type StorageRole,
} from '../../lib/config/storage-roles';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { waitForStatus } from './protection';
import { pseudoRandom, type TestMachine } from './qemu-machine';
import { createManualPolicy, protectManual } from './testbed';

const MiB = 1024 * 1024;

/** A certificate for 127.0.0.1 and its key (PEM), made with the openssl CLI. */
export function selfSignedCert(dir: string): { certPath: string; keyPath: string } {
  const certPath = path.join(dir, 'azurite-cert.pem');
  const keyPath = path.join(dir, 'azurite-key.pem');
  // prettier-ignore
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { certPath, keyPath };
}

export interface TokenEndpoint {
  /** IDENTITY_ENDPOINT and IDENTITY_HEADER for a process that should get tokens. */
  env: NodeJS.ProcessEnv;
  /** The secret header a caller must send (a test looks for it where it must not be). */
  header: string;
  /** Tokens handed out, per resource asked for. */
  issued: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * The App Service managed-identity endpoint as DefaultAzureCredential calls it (GET with
 * api-version, resource and the X-IDENTITY-HEADER secret). Its tokens are JWTs with an Entra ID
 * issuer and the storage audience: what Azurite's `--oauth basic` checks (issuer prefix, audience,
 * nbf/exp; it does not check signatures, so an HMAC with a throwaway key signs them here).
 */
export async function startTokenEndpoint(): Promise<TokenEndpoint> {
  const header = randomBytes(16).toString('hex');
  const signingKey = randomBytes(32);
  const tenant = randomUUID();
  const issued = new Map<string, number>();
  const b64 = (v: object | Buffer) =>
    (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString('base64url');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const resource = url.searchParams.get('resource') ?? '';
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers['x-identity-header'] !== header)
      return reply(401, {
        error: 'unauthorized',
        error_description: "the X-IDENTITY-HEADER secret is not this host's",
      });
    if (url.searchParams.get('api-version') !== '2019-08-01' || !resource)
      return reply(400, {
        error: 'invalid_request',
        error_description: 'api-version 2019-08-01 and resource are required',
      });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      aud: resource.replace(/\/$/, ''),
      iss: `https://sts.windows.net/${tenant}/`,
      iat: now,
      nbf: now - 60,
      exp: now + 3600,
      oid: randomUUID(),
      tid: tenant,
    };
    const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    const token = `${unsigned}.${b64(createHmac('sha256', signingKey).update(unsigned).digest())}`;
    issued.set(resource, (issued.get(resource) ?? 0) + 1);
    reply(200, { access_token: token, expires_on: String(claims.exp), resource, token_type: 'Bearer' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    env: { IDENTITY_ENDPOINT: `http://127.0.0.1:${port}/msi/token`, IDENTITY_HEADER: header },
    header,
    issued,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The env var that carries one role's SAS for one container. */
export function sasEnvName(role: StorageRole, key: ContainerKey): string {
  return `OSR_STORAGE_SAS_${role.replace('-', '_').toUpperCase()}_${key.toUpperCase()}`;
}

/** A container SAS URL made from Azurite's account key. */
export function containerSas(
  accountUrl: string,
  container: string,
  permissions: string,
  expiresOn = new Date(Date.now() + 6 * 3600_000),
): string {
  const query = generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse(permissions),
      expiresOn,
      protocol: SASProtocol.HttpsAndHttp,
    },
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  ).toString();
  return `${accountUrl}/${container}?${query}`;
}

/** Per role, the environment that gives it exactly its containers (ROLE_GRANTS), by SAS. */
export function roleSasEnv(accountUrl: string): Record<StorageRole, NodeJS.ProcessEnv> {
  const out = {} as Record<StorageRole, NodeJS.ProcessEnv>;
  for (const role of STORAGE_ROLES) {
    const env: NodeJS.ProcessEnv = { OSR_STORAGE_AUTH: 'sas' };
    for (const [key, perms] of Object.entries(ROLE_GRANTS[role]) as [ContainerKey, string][])
      env[sasEnvName(role, key)] = containerSas(accountUrl, CONTAINERS[key], perms);
    out[role] = env;
  }
  return out;
}

/** Every blob name (with snapshot) in every container, seen with the account key. */
export async function allBlobs(account: BlobServiceClient): Promise<string[]> {
  const names: string[] = [];
  for await (const c of account.listContainers())
    for await (const b of account.getContainerClient(c.name).listBlobsFlat({ includeSnapshots: true }))
      names.push(`${c.name}/${b.name}${b.snapshot ? `@${b.snapshot}` : ''}`);
  return names.sort();
}

/**
 * Protect (initial sync, first point) and a second point after new writes: the process server's,
 * the applier's and the control plane's storage work, signed in the way under test. Returns the
 * machine's disk as it was at the second point.
 */
export async function protectAndPoint(
  ctx: ControlContext,
  account: BlobServiceClient,
  vm: TestMachine,
  name: string,
): Promise<{ pointId: string; expected: Buffer }> {
  const disk = await vm.disk(0);
  await disk.write(0, pseudoRandom(2 * MiB, 41));
  await disk.flush();
  await createManualPolicy(ctx);
  await protectManual(ctx, name, vm);
  await disk.write(3 * MiB, pseudoRandom(1 * MiB, 42));
  await disk.flush();
  const expected = await vm.readAll(0);
  const point = await machines.takePoint(ctx, name, { kind: 'crash', tag: 'sign-in' });
  const points = await machines.listPoints(ctx, name);
  assert.ok(
    points.some((p) => p.id === point.id),
    'the point is in the catalog',
  );
  // The applier made the replica and one snapshot per point from what the process server uploaded.
  const replica = (await allBlobs(account)).filter((n) =>
    n.startsWith(`${CONTAINERS.replica}/${name}/disk0@`),
  );
  assert.equal(replica.length, points.length, `a replica snapshot per point: ${replica.join(', ')}`);
  return { pointId: point.id, expected };
}

/**
 * A drill from the point whose disk is the machine's disk byte for byte (read with the account
 * key, not through OSR), then its cleanup.
 */
export async function drillAndCleanup(
  ctx: ControlContext,
  account: BlobServiceClient,
  name: string,
  at: { pointId: string; expected: Buffer },
): Promise<void> {
  const { ref, status } = await failover.startTestFailover(ctx, name, { point: at.pointId });
  assert.equal(status?.state, 'ready', JSON.stringify(status));
  const drillDisk = status.disks[0]!;
  const image = await account
    .getContainerClient(CONTAINERS.failover)
    .getPageBlobClient(drillDisk.blob)
    .downloadToBuffer(0, drillDisk.sizeBytes);
  assert.ok(image.equals(at.expected), 'the drill disk is the machine disk at the point, byte for byte');

  const [cleaned] = await failover.cleanupTestFailover(ctx, ref.job);
  assert.equal(cleaned?.status?.state, 'cleaned-up');
  const left = (await allBlobs(account)).filter((n) => n.startsWith(`${CONTAINERS.failover}/`));
  assert.deepEqual(left, [], 'cleanup removed the drill disk');
  await waitForStatus(ctx, name, (s) => s.state === 'protected');
}

/** Every file under dir, as text. */
export function filesText(dir: string): [string, string][] {
  const out: [string, string][] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) {
      const file = path.join(entry.parentPath, entry.name);
      out.push([file, fs.readFileSync(file, 'latin1')]);
    }
  return out;
}

/** Fails naming where a secret was found: logs, audit entries and vault documents, blob metadata. */
export async function assertNoSecrets(
  secrets: string[],
  places: { dirs: string[]; account: BlobServiceClient; extra?: [string, string][] },
): Promise<number> {
  const haystacks: [string, string][] = [...(places.extra ?? [])];
  for (const dir of places.dirs) haystacks.push(...filesText(dir));
  for await (const c of places.account.listContainers()) {
    const cc = places.account.getContainerClient(c.name);
    for await (const b of cc.listBlobsFlat({ includeMetadata: true })) {
      if (c.name === CONTAINERS.vault)
        haystacks.push([
          `${c.name}/${b.name}`,
          (await cc.getBlobClient(b.name).downloadToBuffer()).toString('latin1'),
        ]);
      haystacks.push([`${c.name}/${b.name} metadata`, JSON.stringify(b.metadata ?? {})]);
    }
  }
  for (const [where, text] of haystacks)
    for (const secret of secrets)
      assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 4)}…) appears in ${where}`);
  return haystacks.length;
}
