// Refuses, before a worker polls, a container SAS that cannot do what its role needs: another
// container, a blob or account SAS, a permission missing, expired or not yet valid. The error
// names the role, the container, what is wrong and how to fix it, and never the signature.
import { PERMISSION_NAMES, type ContainerKey, type StorageRole } from '../config/storage-roles';
import { sasUrlForDisplay } from './storage-secrets';

export class StorageSignInError extends Error {
  override name = 'StorageSignInError';
}

/** Where an operator sets the SAS of one role and container. */
export function sasSetting(role: StorageRole, key: ContainerKey): string {
  return `storage.sas.${role}.${key} (OSR_STORAGE_SAS_${role.replace('-', '_').toUpperCase()}_${key.toUpperCase()})`;
}

function fix(container: string, needs: string): string {
  return (
    `Fix: issue a container SAS for ${container} with permissions ${needs} and a later expiry ` +
    `(az storage container generate-sas --account-name <account> --name ${container} --permissions ${needs} ` +
    '--expiry <UTC date> --https-only --auth-mode login --as-user --output tsv) and set its URL '
  );
}

/**
 * Checks one SAS URL against what the role needs on the container; throws StorageSignInError.
 * `needs`: the permission letters (storage-roles.ts).
 */
export function checkContainerSas(input: {
  role: StorageRole;
  key: ContainerKey;
  container: string;
  needs: string;
  sasUrl: string | undefined;
  now?: Date;
}): void {
  const { role, key, container, needs } = input;
  const where = sasSetting(role, key);
  const refuse = (problem: string) =>
    new StorageSignInError(
      `storage sign-in of the ${role} role refused: ${problem}. ${fix(container, needs)}in ${where}`,
    );
  if (!input.sasUrl)
    throw refuse(`no SAS URL is given for container ${container}, which the ${role} role needs`);
  let url: URL;
  try {
    url = new URL(input.sasUrl);
  } catch {
    throw refuse(
      `the SAS for container ${container} is not a URL (expected https://<account>.blob.core.windows.net/${container}?sv=…&sig=…)`,
    );
  }
  const q = url.searchParams;
  const shown = sasUrlForDisplay(input.sasUrl);
  if (!q.get('sig')) throw refuse(`${shown} carries no SAS (no sig parameter)`);
  const pathContainer = url.pathname.split('/').filter(Boolean).at(-1);
  if (pathContainer !== container)
    throw refuse(
      `the SAS URL given for container ${container} is for ${shown}, not for container ${container}`,
    );
  const resource = q.get('sr');
  if (resource !== 'c')
    throw refuse(
      resource
        ? `the SAS for container ${container} has sr=${resource}: a ${resource === 'b' ? 'blob' : resource} SAS, not a container SAS (sr=c)`
        : `the SAS for container ${container} is not a container SAS (no sr=c; an account SAS grants more than one container)`,
    );
  const granted = q.get('sp') ?? '';
  const missing = [...needs].filter((p) => !granted.includes(p));
  if (missing.length)
    throw refuse(
      `the SAS for container ${container} lacks permission ${missing.map((p) => `${p} (${PERMISSION_NAMES[p] ?? p})`).join(', ')} ` +
        `that the ${role} role needs (it grants sp=${granted || 'nothing'}; needed: ${needs})`,
    );
  const now = input.now ?? new Date();
  const expiry = q.get('se');
  if (!expiry && !q.get('si'))
    throw refuse(`the SAS for container ${container} has no expiry (se) and no stored access policy (si)`);
  if (expiry && !(Date.parse(expiry) > now.getTime()))
    throw refuse(`the SAS for container ${container} expired at ${expiry}`);
  const start = q.get('st');
  if (start && Date.parse(start) > now.getTime() + 5 * 60_000)
    throw refuse(`the SAS for container ${container} is not valid before ${start}`);
}
