// Format promises: a segment and vault documents written by the previous release (fixtures made
// by that release's own code, see test/fixtures/formats/README.md) are read by this one, and a
// newer format is refused with the version and the fix. Vault documents go through a real Azurite.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { azuriteConnectionString, CONTAINERS, ensureContainers } from '../../lib/azure/blob-client';
import { Vault } from '../../lib/azure/vault';
import { VAULT_FORMAT_VERSION, VaultFormatError } from '../../lib/azure/vault-format';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { keyFromBase64, Keyring } from '../../lib/segments/keys';
import { decodeSegment, SEGMENT_MAGIC, SegmentVerificationError } from '../../lib/segments/segment-format';
import { recoveryDocs } from '../../shared/recovery-types';
import type { RecoveryPoint } from '../../shared/replication-types';
import { startAzurite } from '../../stack/azurite';
import { projectRoot } from '../helpers/test-stack';

const v1 = path.join(projectRoot, 'test', 'fixtures', 'formats', 'v1');
const fixture = (name: string): Buffer => fs.readFileSync(path.join(v1, name));

describe('a segment written by the previous release', () => {
  const expected = JSON.parse(fixture('segment.expected.json').toString('utf8')) as {
    keyBase64: string;
    extents: { offset: number; length: number }[];
  };
  const keyring = new Keyring([keyFromBase64(expected.keyBase64)]);

  test('decodes to the bytes it was made from', () => {
    const { header, data } = decodeSegment(fixture('segment.osrseg'), keyring);
    const source = fixture('segment-data.bin');
    // The fixture's middle extent is zeros: the segment carries it as a 'zero' extent, no bytes.
    assert.deepEqual(
      header.extents.map((e) => e.kind),
      ['data', 'zero', 'data'],
    );
    const dataExtents = expected.extents.filter((_, i) => i !== 1);
    assert.equal(data.length, 8192);
    assert.ok(data.subarray(0, 4096).equals(source.subarray(0, 4096)), 'first extent byte for byte');
    assert.ok(data.subarray(4096).equals(source.subarray(8192)), 'last extent byte for byte');
    assert.deepEqual(
      header.extents.filter((e) => e.kind === 'data').map(({ offset, length }) => ({ offset, length })),
      dataExtents,
    );
    assert.ok(source.subarray(4096, 8192).every((b) => b === 0));
    assert.equal(header.machine, 'fixture-vm');
    assert.equal(header.keyId, keyring.ids[0]);
  });

  test('a newer segment version is refused with the version and the fix', () => {
    const segment = fixture('segment.osrseg');
    const headerLength = segment.readUInt32BE(SEGMENT_MAGIC.length);
    const headerText = segment.subarray(12, 12 + headerLength).toString('utf8');
    const newer = Buffer.from(headerText.replace('"version":1', '"version":2'), 'utf8');
    assert.equal(newer.length, headerLength);
    const forged = Buffer.concat([segment.subarray(0, 12), newer, segment.subarray(12 + headerLength)]);
    assert.throws(
      () => decodeSegment(forged, keyring),
      (err: unknown) =>
        err instanceof SegmentVerificationError &&
        err.reason === 'unsupported-version' &&
        /version 2/.test(err.message) &&
        /upgrade OSR/.test(err.message),
    );
  });
});

describe('vault documents written by the previous release', () => {
  let azurite: RunningProcess | undefined;
  let blobService: BlobServiceClient;
  let vault: Vault;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-formats-'));
  const documents: [file: string, name: string][] = [
    ['policy.json', Vault.policyDoc('gold')],
    ['machine.json', Vault.machineDoc('fixture-vm')],
    ['point.json', Vault.pointDoc('fixture-vm', 'p-000003')],
    ['recovered.json', recoveryDocs.recovered('fixture-vm', 'drill-1')],
  ];

  before(async () => {
    const port = await freePort();
    azurite = await startAzurite({ port, logFile: path.join(tmp, 'azurite.log') });
    blobService = BlobServiceClient.fromConnectionString(azuriteConnectionString(port));
    await ensureContainers(blobService);
    vault = new Vault(blobService);
  });
  after(async () => {
    if (azurite) await stopPid(azurite.pid);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const store = async (name: string, bytes: Buffer | string): Promise<void> => {
    const blob = blobService.getContainerClient(CONTAINERS.vault).getBlockBlobClient(name);
    await blob.upload(bytes, Buffer.byteLength(bytes));
  };

  test('are read as they were written (no formatVersion: version 1)', async () => {
    for (const [file, name] of documents) {
      const stored = fixture(file);
      assert.ok(!stored.toString('utf8').includes('formatVersion'), `${file} predates versions`);
      await store(name, stored);
      const read = await vault.read<Record<string, unknown>>(name);
      assert.deepEqual(read?.value, JSON.parse(stored.toString('utf8')), file);
    }
    assert.equal((await vault.policy('gold'))?.rpoThresholdSeconds, 300);
    const source = (await vault.machine('fixture-vm'))?.source;
    assert.equal(source?.type, 'qemu');
    assert.equal(source?.type === 'qemu' ? source.qmpSocket : undefined, '/run/fixture-vm/qmp.sock');
    const points = await vault.points('fixture-vm');
    assert.deepEqual(
      points.map((p) => [p.id, p.disks[0]?.snapshot]),
      [['p-000003', '2026-11-30T10:05:01.0000000Z']],
    );
  });

  test('this release writes formatVersion and reads it back without it', async () => {
    const policy = JSON.parse(fixture('policy.json').toString('utf8')) as Record<string, unknown>;
    await vault.write(Vault.policyDoc('silver'), { ...policy, name: 'silver' });
    const raw = await blobService
      .getContainerClient(CONTAINERS.vault)
      .getBlobClient(Vault.policyDoc('silver'))
      .downloadToBuffer();
    assert.equal(
      (JSON.parse(raw.toString('utf8')) as { formatVersion?: number }).formatVersion,
      VAULT_FORMAT_VERSION,
    );
    assert.deepEqual((await vault.read(Vault.policyDoc('silver')))?.value, { ...policy, name: 'silver' });
  });

  test("a point of the previous release is listed before this release's, whatever the instants say", async () => {
    await store(Vault.pointDoc('fixture-vm', 'p-000003'), fixture('point.json'));
    const old = JSON.parse(fixture('point.json').toString('utf8')) as RecoveryPoint;
    // Cut after the upgrade by a new protection, labelled an hour earlier (its primary's clock was
    // behind before the upgrade): it is still the newer point, and `latest`.
    const newer: RecoveryPoint = {
      ...old,
      id: 'p-new-c1',
      cycle: 1,
      instant: '2026-11-30T09:05:00.000Z',
      sourceInstant: '2026-11-30T09:05:00.000Z',
      protection: '2026-11-30T09:00:00.000Z',
      createdAt: '2026-11-30T11:00:00.000Z',
    };
    await vault.writePoint(newer);
    assert.deepEqual(
      (await vault.points('fixture-vm')).map((p) => p.id),
      ['p-000003', 'p-new-c1'],
    );
    assert.deepEqual(
      (await vault.pointSummaries('fixture-vm')).map((p) => [p.id, p.protection]),
      [
        ['p-000003', undefined],
        ['p-new-c1', newer.protection],
      ],
    );
  });

  test('a newer document is refused with the document, the version and the fix', async () => {
    const name = Vault.machineDoc('from-the-future');
    const machine = JSON.parse(fixture('machine.json').toString('utf8')) as Record<string, unknown>;
    await store(name, JSON.stringify({ formatVersion: VAULT_FORMAT_VERSION + 1, ...machine }));
    await assert.rejects(
      vault.read(name),
      (err: unknown) =>
        err instanceof VaultFormatError &&
        err.message.includes(name) &&
        err.message.includes(`format version ${VAULT_FORMAT_VERSION + 1}`) &&
        /upgrade OSR/.test(err.message),
    );
    // The refused document is left as it was: nothing is lost.
    const raw = await blobService.getContainerClient(CONTAINERS.vault).getBlobClient(name).downloadToBuffer();
    assert.equal((JSON.parse(raw.toString('utf8')) as { formatVersion: number }).formatVersion, 2);
  });
});
