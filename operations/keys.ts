// Segment keys: list (ids and dates, never key material), rotate, and forget one that is lost
// for good. The key files live on each data-path host; the vault records their ids.
import {
  forgetKey as removeKeyRecord,
  markKeyRetired,
  registerKey,
  registeredKeys,
} from '../lib/azure/key-registry';
import { readKeyFolder, rotateKeyFile } from '../lib/segments/key-folder';
import { KeyError } from '../lib/segments/keys';
import { keyFileOf, loadSegmentKeys } from '../lib/segments/segment-keys';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export interface KeyRow {
  id: string;
  createdAt: string;
  retiredAt?: string;
  /** New segments are encrypted with it. */
  current: boolean;
  /** Whether this host has its key file, and where. */
  onThisHost: 'present' | 'missing';
  file?: string;
}

export async function listKeys(ctx: ControlContext): Promise<KeyRow[]> {
  const keyFile = keyFileOf(ctx.config);
  const [recorded, folder] = await Promise.all([registeredKeys(ctx.vault), readKeyFolder(keyFile)]);
  const rows: KeyRow[] = recorded.map((r) => ({
    id: r.id,
    createdAt: r.createdAt,
    retiredAt: r.retiredAt,
    current: r.retiredAt === undefined,
    onThisHost: folder.keyring.has(r.id) ? 'present' : 'missing',
    file: folder.files.get(r.id)?.file,
  }));
  // Keys on this host the vault has not seen yet (no worker started with them).
  for (const [id, { file, createdAt }] of folder.files) {
    if (recorded.some((r) => r.id === id)) continue;
    rows.push({
      id,
      createdAt: createdAt.toISOString(),
      current: id === folder.current?.id,
      onThisHost: 'present',
      file,
    });
  }
  return rows;
}

export const rotateKeys = audited(
  'keys.rotate',
  async (ctx: ControlContext): Promise<{ previous: string; current: string; keyFile: string }> => {
    if (ctx.config.encryption.key) {
      throw new OperationError(
        'the segment key comes from OSR_ENCRYPTION_KEY / encryption.key, which OSR cannot change; ' +
          'to rotate, move it to a key file (encryption.keyFile, mode 0600) on every data-path host first',
        'invalid',
      );
    }
    const keyFile = keyFileOf(ctx.config);
    // Refuses first if a recorded key is missing here: rotating would not bring it back.
    await keyed(() => loadSegmentKeys(ctx.config, ctx.vault));
    const { previous, current } = await rotateKeyFile(keyFile);
    const now = new Date();
    await registerKey(ctx.vault, current.id, now);
    await markKeyRetired(ctx.vault, previous.id, now);
    return { previous: previous.id, current: current.id, keyFile };
  },
  () => ({ target: 'segment-key' }),
);

export const forgetKey = audited(
  'keys.forget',
  async (ctx: ControlContext, id: string): Promise<void> => {
    const folder = await readKeyFolder(keyFileOf(ctx.config));
    if (folder.keyring.has(id)) {
      throw new OperationError(
        `key ${id} is on this host (${folder.files.get(id)?.file}); forget only a key that is lost for good`,
        'conflict',
      );
    }
    if (!(await registeredKeys(ctx.vault)).some((r) => r.id === id)) {
      throw new OperationError(
        `the vault records no key ${id}; \`osr keys list\` shows those it does`,
        'not-found',
      );
    }
    await removeKeyRecord(ctx.vault, id);
  },
  (_ctx, id) => ({ target: `segment-key/${id}` }),
);

/** A key problem is bad configuration on this host: refused with its message (exit 2, 400). */
async function keyed<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof KeyError) throw new OperationError(err.message, 'invalid');
    throw err;
  }
}
