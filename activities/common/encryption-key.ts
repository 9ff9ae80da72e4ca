// The segment keys of a worker: loaded, checked against the vault and watched by lib/segments/segment-keys.
export { loadEncryptionKey, loadSegmentKeys, watchSegmentKeys } from '../../lib/segments/segment-keys';
