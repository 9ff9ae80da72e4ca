// The one place a process server picks the connector of a machine's source, by
// `machine.source.type` (lib/sources/source-connector.ts). A new kind of source is one line here.
import type { ProtectedMachine } from '../../shared/replication-types';
import { libvirtSource } from '../../lib/libvirt/libvirt-source';
import { agentSource } from '../../lib/sources/agent-source';
import { qemuSource } from '../../lib/qemu/qemu-source';
import type { SourceConnector, SourceKind } from '../../lib/sources/source-connector';

type SourceType = ProtectedMachine['source']['type'];

const KINDS: { [T in SourceType]: SourceKind } = {
  qemu: qemuSource,
  libvirt: libvirtSource,
  agent: agentSource,
};

/**
 * The connector kind for a source type. Frozen points and transfer inputs do not name their
 * source (their shapes are in workflow histories): they are read as QEMU's, which is right for
 * libvirt's too (both are NBD exports on a unix socket with a dirty-bitmap context), except a
 * remote libvirt host's (`nbdSocketHost`), which only the libvirt kind reaches (over SSH). A disk
 * an agent froze names its agent (FrozenDisk.agentId): read through the agent's connection.
 */
export function sourceKind(type: SourceType = 'qemu'): SourceKind {
  const kind = KINDS[type];
  if (!kind) throw new Error(`no source connector for source type ${String(type)}`);
  return kind;
}

/**
 * Runs `fn` with a session to the machine's source, closed afterwards. `workDir`: the connector's
 * state folder (tracking, frozen points). `onUnreachable` turns a failure to connect into the
 * error to throw (default: the connect error itself).
 */
export async function withSource<T>(
  machine: ProtectedMachine,
  fn: (source: SourceConnector) => Promise<T>,
  options: { workDir?: string; onUnreachable?: (err: Error) => unknown } = {},
): Promise<T> {
  const { workDir, onUnreachable = (err: Error) => err } = options;
  let source: SourceConnector;
  try {
    source = await sourceKind(machine.source.type).connect(machine, { workDir });
  } catch (err) {
    throw onUnreachable(err as Error);
  }
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}
