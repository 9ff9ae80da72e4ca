// The source connector for QEMU (a qemu-system VM or a qemu-storage-daemon), over QMP and NBD:
// change tracking and frozen points through the CBT connector (dirty bitmaps, fleecing), writes
// held with QMP stop/cont on a VM, or for a storage daemon (whose writers are outside QEMU)
// through the guest agent's fsfreeze or the machine's quiesce hooks. One QMP connection per
// session: a process server holds no connection to a machine between activities.
import path from 'node:path';
import type { BarrierMethod } from '../../shared/group-types';
import type { ProtectedMachine, QemuSource } from '../../shared/replication-types';
import { runHook } from '../process/hook';
import {
  FrozenPointGivenUpError,
  FrozenPointLostError,
  NoWriteBarrierError,
  SourceSetupError,
  SourceUnreachableError,
  type FrozenDiskReader,
  type FrozenSourceDisk,
  type SourceConnector,
  type SourceConnectorOptions,
  type SourceKind,
  type StopWritesResult,
} from '../sources/source-connector';
import { CbtConnector } from './cbt-connector';
import { sourceExtents } from './changed-extents';
import { GuestAgentClient } from './guest-agent-client';
import { NbdClient } from './nbd-client';
import { NbdError } from './nbd-protocol';
import { NbdServerRunningError, nbdServerRunsMessage } from './nbd-server-state';
import { QmpClient } from './qmp-client';
import { quiesceAround, thawLeftFrozen } from './quiesce';
import { runState } from './run-state';

export const qemuSource: SourceKind = {
  type: 'qemu',
  async connect(machine, options) {
    if (machine.source.type !== 'qemu') throw new Error(`machine ${machine.name} is not a QEMU process`);
    const qmp = await QmpClient.connect(machine.source.qmpSocket);
    return new QemuSourceConnector(machine, machine.source, qmp, options);
  },
  openFrozenDisk: openNbdFrozenDisk,
};

class QemuSourceConnector implements SourceConnector {
  #cbt: CbtConnector | undefined;

  constructor(
    private readonly machine: ProtectedMachine,
    private readonly source: QemuSource,
    private readonly qmp: QmpClient,
    private readonly options: SourceConnectorOptions,
  ) {}

  private get cbt(): CbtConnector {
    const { workDir } = this.options;
    if (!workDir) throw new Error(`source session of ${this.machine.name} was opened without a work folder`);
    this.#cbt ??= new CbtConnector(this.qmp, {
      workDir: path.resolve(workDir),
      nbdSocket: this.source.nbdSocket,
    });
    return this.#cbt;
  }

  async discoverDisks() {
    return (await this.cbt.listDisks()).map((d) => ({
      diskId: d.node,
      sizeBytes: d.size,
      format: d.format,
      tracked: d.tracking !== null,
    }));
  }

  async enableTracking(diskId: string) {
    const t = await this.cbt.enableTracking(diskId);
    return {
      diskId,
      persistent: t.persistent,
      fullSyncRequired: t.fullSyncRequired,
      warnings: t.warnings,
    };
  }

  /** Where a guest-agent freeze in flight is marked (lib/qemu/quiesce.ts); none without an agent. */
  private get frozenMarker(): string | undefined {
    const { workDir } = this.options;
    if (!this.machine.quiesce?.guestAgentSocket || !workDir) return undefined;
    return path.join(path.resolve(workDir), 'guest-frozen');
  }

  /**
   * Before anything else, what an interrupted call left: a VM paused mid-switch is resumed (a
   * paused guest could not answer the thaw either), a guest left frozen is thawed.
   */
  private async undoInterrupted(): Promise<void> {
    await this.cbt.resumeIfLeftPaused();
    const [socket, marker] = [this.machine.quiesce?.guestAgentSocket, this.frozenMarker];
    if (socket && marker) await thawLeftFrozen(socket, this.machine.name, marker);
  }

  async freeze(diskIds: string[], pitId: string, options: { quiesce?: boolean } = {}) {
    await this.undoInterrupted();
    const hooks = options.quiesce ? this.machine.quiesce : undefined;
    const view = await quiesceAround(
      hooks,
      this.machine.name,
      () =>
        this.cbt.freeze(diskIds, pitId).catch((err: unknown) => {
          // Started after protect (the probe refuses it before): said to the operator in OSR's words.
          if (!(err instanceof NbdServerRunningError)) throw err;
          const name = this.machine.name;
          throw new SourceSetupError(
            `machine ${name}: ${nbdServerRunsMessage(err.exports)}. Unprotect it (\`osr unprotect ${name}\`) and protect it again with --nbd <path>`,
          );
        }),
      this.frozenMarker,
    );
    return {
      pitId: view.pitId,
      instant: view.instant,
      disks: view.disks.map((d) => ({
        diskId: d.node,
        sizeBytes: d.size,
        exportName: d.exportName,
        nbdSocket: d.nbdSocket,
        bitmap: d.bitmap,
      })),
    };
  }

  async listFrozen() {
    await this.undoInterrupted();
    return this.cbt.listFrozen();
  }

  async release(pitId: string, options: { success: boolean }) {
    await this.undoInterrupted();
    return this.cbt.release(pitId, options);
  }

  async disableTracking() {
    await this.undoInterrupted();
    return this.cbt.disableTracking();
  }

  async writeBarrier(): Promise<BarrierMethod> {
    const state = await runState(this.qmp);
    if (state !== 'not-a-vm') return state === 'running' ? 'qmp-stop' : 'already-paused';
    return this.storageDaemonMethod();
  }

  async holdWrites(): Promise<BarrierMethod> {
    // A VM is asked and paused in one QMP connection: the barrier's length is what it costs.
    const state = await runState(this.qmp);
    if (state === 'running') await this.qmp.execute('stop');
    if (state !== 'not-a-vm') return state === 'running' ? 'qmp-stop' : 'already-paused';
    const method = this.storageDaemonMethod();
    if (method === 'guest-agent') await this.withGuestAgent(async (agent) => void (await agent.freeze()));
    if (method === 'quiesce-hook') {
      await runHook(
        this.machine.quiesce?.pre as string,
        this.hookEnv('group'),
        this.hookTimeout(),
        `pre (hold) command of ${this.machine.name}`,
      );
    }
    return method;
  }

  async releaseWrites(method: BarrierMethod): Promise<void> {
    if (method === 'qmp-stop') await this.qmp.execute('cont');
    if (method === 'guest-agent') await this.withGuestAgent(async (agent) => void (await agent.thaw()));
    if (method === 'quiesce-hook') {
      await runHook(
        this.machine.quiesce?.post as string,
        this.hookEnv('group'),
        this.hookTimeout(),
        `post (release) command of ${this.machine.name}`,
      );
    }
  }

  async stopWrites(): Promise<StopWritesResult> {
    const { name } = this.machine;
    const state = await runState(this.qmp);
    if (state === 'running') await this.qmp.execute('stop');
    if (state !== 'not-a-vm') {
      return {
        method: 'qmp-stop',
        note: `VM ${name} ${state === 'running' ? 'paused with QMP stop' : 'was already paused'}`,
      };
    }
    // A qemu-storage-daemon has no guest to pause: its writers are outside QEMU. The quiesce
    // command is run and left in effect (no thaw: the source is being retired).
    const pre = this.machine.quiesce?.pre;
    if (pre) {
      await runHook(pre, this.hookEnv('final'), this.hookTimeout(), `quiesce command of ${name}`);
      return { method: 'quiesce-hook', note: `quiesce command of ${name} run (no thaw)` };
    }
    return {
      method: 'none',
      note:
        `${name} is served by a qemu-storage-daemon, which has no guest to stop, and has no quiesce command: ` +
        'its writers must have been stopped by the operator before the planned failover, or their later writes are not in the final point',
    };
  }

  close(): Promise<void> {
    return this.qmp.close();
  }

  /** A storage daemon's writers are outside QEMU: only the guest agent or hook commands hold them. */
  private storageDaemonMethod(): BarrierMethod {
    const { quiesce, name } = this.machine;
    if (quiesce?.guestAgentSocket) return 'guest-agent';
    if (quiesce?.pre && quiesce.post) return 'quiesce-hook';
    throw new NoWriteBarrierError(
      `machine ${name} is served by a qemu-storage-daemon and has no guest agent or pre/post quiesce commands, ` +
        'so its writes cannot be held for a consistent group cut; protect it again with --guest-agent or with both --pre and --post, or leave it out of the group',
    );
  }

  private async withGuestAgent(fn: (agent: GuestAgentClient) => Promise<void>): Promise<void> {
    const agent = await GuestAgentClient.connect(
      this.machine.quiesce?.guestAgentSocket as string,
      this.hookTimeout(),
    );
    try {
      await fn(agent);
    } finally {
      agent.close();
    }
  }

  private hookTimeout(): number {
    return (this.machine.quiesce?.timeoutSeconds ?? 60) * 1000;
  }

  private hookEnv(kind: 'group' | 'final'): NodeJS.ProcessEnv {
    return { ...process.env, OSR_MACHINE: this.machine.name, OSR_POINT_KIND: kind };
  }
}

/**
 * Opens a frozen disk's NBD export with its allocation and dirty-bitmap contexts (QEMU's own
 * exports and the ones libvirt's pull-mode backups start alike).
 */
export async function openNbdFrozenDisk(disk: FrozenSourceDisk): Promise<FrozenDiskReader> {
  const nbd = await NbdClient.connect({
    socket: disk.nbdSocket,
    exportName: disk.exportName,
    metaContexts: ['base:allocation', ...(disk.bitmap ? [`qemu:dirty-bitmap:${disk.bitmap}`] : [])],
  }).catch((err: Error) => {
    // The VM or storage daemon is gone, or still there without the point's export (it restarted).
    if (/no such socket|connection refused/.test(err.message)) throw new SourceUnreachableError(err.message);
    if (/no such export/.test(err.message)) throw new FrozenPointLostError(err.message);
    throw err;
  });
  // A view QEMU gave up (fleecing-graph.ts: on-cbw-error=break-snapshot) refuses every read; a
  // failed request is checked against a read of the first sector to tell that from a bad request.
  const guard = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof NbdError) || err.errno === undefined) throw err;
      const probe = await nbd.readInto(Buffer.alloc(512), 0, 0, Math.min(512, nbd.size)).then(
        () => null,
        (e: unknown) => e,
      );
      if (!(probe instanceof NbdError)) throw err;
      throw new FrozenPointGivenUpError(
        `the source gave up point in time of ${disk.exportName}: its frozen view refuses every read (${err.message}). ` +
          "QEMU does so when it cannot keep the old data of a block the machine rewrites, to let the machine's write go on: " +
          "the process server's state disk is full (or too slow)",
      );
    }
  };
  return {
    sizeBytes: nbd.size,
    changedExtents: (options) => guard(() => sourceExtents(nbd, { ...options, bitmap: disk.bitmap })),
    readInto: (target, targetOffset, offset, length) =>
      guard(() => nbd.readInto(target, targetOffset, offset, length)),
    close: () => nbd.close(),
  };
}
