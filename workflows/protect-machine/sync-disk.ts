// One disk of a protectMachine cycle: make sure the replica is there (and not rolled back), send
// the disk's changes in slices, apply them, and send again what storage lost or damaged.
import { CancellationScope, patched } from '@temporalio/workflow';
import { FAILURE } from '../../shared/failures';
import type { FrozenDisk, FrozenPoint, TransferMode } from '../../shared/replication-types';
import { failureType, storageUnavailable } from '../lib/failures';
import {
  MAX_CORRUPT_RESENDS,
  RESYNC_BLOCK_BYTES,
  SLICE_SEGMENTS,
  resendRequest,
  segmentsToResend,
} from '../lib/segments';
import { noteStorageTrouble, retryStorage } from '../lib/storage-retry';
import { followingApplier, raise, reportProgress, type ProtectRun } from './run';

/**
 * patched() id: a full copy or a resync is applied while it is sent, by an apply that starts with
 * the transfer and follows the upload, instead of after it (the applier idled during the
 * transfer, the link during the apply). Histories recorded before it replay on the old path.
 */
export const PATCH_APPLY_WHILE_SENDING = 'apply-while-sending';

export async function syncDisk(run: ProtectRun, frozen: FrozenPoint, disk: FrozenDisk) {
  const { s, machine, ps, applier } = run;
  const ensureReplica = () =>
    applier.ensureReplicaDisk({
      machine: machine.name,
      diskId: disk.diskId,
      sizeBytes: disk.sizeBytes,
      reportStorageFaults: true,
    });
  let replica: Awaited<ReturnType<typeof ensureReplica>>;
  try {
    replica = await ensureReplica();
  } catch (err) {
    if (!storageUnavailable(err)) throw err;
    replica = await retryStorage(run.storage, err, `preparing the replica of ${disk.diskId}`, ensureReplica);
  }
  noteStorageTrouble(run.storage, `preparing the replica of ${disk.diskId}`, replica.storage);
  // A full copy into a replica that already exists (an earlier protection, a failed first sync)
  // becomes a checksum resync: only differing blocks cross the wire.
  let mode: TransferMode = disk.mode === 'full' && replica.existed ? 'resync' : disk.mode;
  // Storage that forgot cycles it had acknowledged (an emulator killed before it saved them)
  // holds an older replica than the dirty bitmap assumes: a delta would build a wrong image.
  // (appliedCycle is absent only in histories recorded before it existed.)
  if (replica.appliedCycle !== undefined && mode === 'delta') {
    if (!replica.existed) mode = 'full';
    else if (s.publishedCycle !== undefined && replica.appliedCycle < s.publishedCycle) mode = 'resync';
    if (mode !== 'delta') {
      raise(
        run,
        'storage-rolled-back',
        'critical',
        `storage lost writes it had acknowledged: the replica of ${disk.diskId} holds cycle ${replica.appliedCycle}, OSR had published cycle ${s.publishedCycle ?? 0}; resynchronizing it by checksums (points after cycle ${replica.appliedCycle} are gone from storage)`,
        disk.diskId,
      );
    }
  }
  const checksumsBlob =
    mode === 'resync'
      ? (
          await applier.replicaChecksums({
            machine: machine.name,
            diskId: disk.diskId,
            blockBytes: RESYNC_BLOCK_BYTES,
          })
        ).blob
      : undefined;
  let total = { segments: 0, rawBytes: 0, zeroBytes: 0, sentBytes: 0 };
  // The apply that follows the upload ends with the cycle's manifest. If it fails (a bad or lost
  // segment, an upload stalled), the apply after the transfer does the cycle, as before the patch.
  const followScope = new CancellationScope();
  let following =
    mode !== 'delta' && patched(PATCH_APPLY_WHILE_SENDING)
      ? followScope
          .run(() =>
            followingApplier.applyCycle({
              machine: machine.name,
              diskId: disk.diskId,
              cycle: frozen.cycle,
              follow: true,
              sizeBytes: disk.sizeBytes,
            }),
          )
          .then(
            () => true,
            () => false,
          )
      : undefined;
  // Loops, not helper functions: an extra await would reorder commands between parallel disks
  // and break the replay of recorded histories.
  let attempt = 0;
  for (let fromIndex = 0; ; fromIndex = 0) {
    try {
      for (;;) {
        const send = (resumeAt?: number) =>
          ps.transferDisk({
            point: frozen,
            diskId: disk.diskId,
            mode,
            fromIndex: Math.max(fromIndex, resumeAt ?? 0),
            maxSegments: SLICE_SEGMENTS,
            checksumsBlob,
            reportStorageFaults: true,
          });
        let slice: Awaited<ReturnType<typeof send>>;
        try {
          slice = await send();
        } catch (err) {
          if (!storageUnavailable(err)) throw err;
          slice = await retryStorage(run.storage, err, `sending ${disk.diskId}`, send);
        }
        noteStorageTrouble(run.storage, `sending ${disk.diskId}`, slice.storage);
        total = {
          segments: slice.segmentsTotal,
          rawBytes: slice.bytesTotal,
          zeroBytes: total.zeroBytes + slice.summary.zeroBytes,
          sentBytes: total.sentBytes + slice.summary.sentBytes,
        };
        reportProgress(run, {
          diskId: disk.diskId,
          mode,
          segmentsDone: slice.nextIndex,
          segmentsTotal: slice.segmentsTotal,
          bytesDone: slice.bytesDone,
          bytesTotal: slice.bytesTotal,
        });
        if (slice.done) break;
        fromIndex = slice.nextIndex;
      }
    } catch (err) {
      // Never an apply left running when the cycle fails. (Only when there is one: an await more
      // would reorder the commands of older histories.)
      if (following) {
        followScope.cancel();
        await following;
      }
      throw err;
    }
    if (following && (await following)) break;
    following = undefined;
    let sendAgain = false;
    for (; ; attempt++) {
      try {
        const apply = () =>
          applier.applyCycle({
            machine: machine.name,
            diskId: disk.diskId,
            cycle: frozen.cycle,
            reportStorageFaults: true,
          });
        let applied: Awaited<ReturnType<typeof apply>>;
        try {
          applied = await apply();
        } catch (err) {
          if (!storageUnavailable(err)) throw err;
          applied = await retryStorage(run.storage, err, `applying ${disk.diskId}`, apply);
        }
        noteStorageTrouble(run.storage, `applying ${disk.diskId}`, applied.storage);
        break;
      } catch (err) {
        if (failureType(err) === FAILURE.CycleNotUploaded && attempt < MAX_CORRUPT_RESENDS) {
          // The transfer had finished, so the cycle's manifest was written: storage lost it (an
          // emulator restarted without having saved it). Send the cycle again; segments still in
          // the cache are skipped.
          raise(
            run,
            'storage-rolled-back',
            'warning',
            `cycle ${frozen.cycle} of ${disk.diskId} vanished from the cache after it was uploaded (storage lost acknowledged writes); sending it again`,
            disk.diskId,
          );
          attempt += 1;
          sendAgain = true;
          break;
        }
        const corrupt = segmentsToResend(err, attempt);
        if (!corrupt) throw err;
        raise(
          run,
          'segment-corrupt',
          'warning',
          `segments ${corrupt.join(', ')} of ${disk.diskId} (cycle ${frozen.cycle}) failed verification in the cache and were not applied; sending them again`,
          disk.diskId,
        );
        const resend = () =>
          ps.transferDisk({
            ...resendRequest(frozen, disk.diskId, mode, corrupt, checksumsBlob),
            reportStorageFaults: true,
          });
        try {
          await resend();
        } catch (resendErr) {
          if (!storageUnavailable(resendErr)) throw resendErr;
          await retryStorage(run.storage, resendErr, `sending segments of ${disk.diskId} again`, resend);
        }
      }
    }
    if (!sendAgain) break;
  }
  return total;
}
