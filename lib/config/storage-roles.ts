// Which storage containers each OSR role is given, and with which permissions: the one table
// that SAS checks, Entra ID role assignments (docs/configuration.md) and the role-scoped blob
// access (lib/azure/role-storage.ts) follow. Letters are SAS permissions: r read, w write
// (create, replace, snapshot), d delete, l list.

export const STORAGE_ROLES = ['control', 'process-server', 'cloud-applier', 'master-target'] as const;
export type StorageRole = (typeof STORAGE_ROLES)[number];

export const CONTAINER_KEYS = ['cache', 'replica', 'failover', 'vault'] as const;
export type ContainerKey = (typeof CONTAINER_KEYS)[number];

export type Grants = Partial<Record<ContainerKey, string>>;

/**
 * Every role writes its own heartbeat into the vault (and the storage probe of `osr stack check`),
 * so each needs the vault; a container SAS or role assignment cannot narrow that to a prefix.
 */
export const ROLE_GRANTS: Record<StorageRole, Grants> = {
  // The control worker, the CLI and `osr serve`: the vault; lists replicas when a failover commits.
  control: { vault: 'rwdl', replica: 'l' },
  // Writes segments, plans and checksum lists into the cache.
  'process-server': { cache: 'rwdl', vault: 'rwdl' },
  // The only writer of replicas and failover disks; reads and prunes the cache; writes points.
  'cloud-applier': { cache: 'rwdl', replica: 'rwdl', failover: 'rwdl', vault: 'rwdl' },
  // Reads reverse segments from the cache and journals what it overwrites there.
  'master-target': { cache: 'rwdl', vault: 'rwdl' },
};

export const PERMISSION_NAMES: Record<string, string> = { r: 'read', w: 'write', d: 'delete', l: 'list' };
