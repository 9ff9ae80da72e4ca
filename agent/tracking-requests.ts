// The agent's side of the process server's tracking requests: each answered with a reply line or
// a data frame (protocol.ts). Requests that change the tracking state run one at a time, in order;
// reads of a frozen snapshot run beside them, READ_SLOTS at a time in buffers of a fixed pool,
// and so does `unhold`: held writes must go at once, even while a request waits on a held disk (a
// change list's era message does).
import type { Write } from './connection';
import { CODECS } from './frame-codec';
import { compressed } from './heap';
import { CHECKSUM_SPAN_BYTES, dataPieces, DATA_CHUNK_BYTES, encode, type TrackingRequest } from './protocol';
import { ReadSlots } from './read-slots';
import { spanChecksums } from './tracking/checksums';
import { TrackingError } from './tracking/errors';
import { whenFull } from './tracking/point-store';
import { storeSpace } from './tracking/store-space';
import type { Tracker } from './tracking/tracker';

/** Reads in flight at once: one read or compressed while the other's frame drains to the socket. */
export const READ_SLOTS = 2;

export interface TrackingHandlerOptions {
  /** Where a point's warnings go (a freeze script that failed to thaw). */
  log?: (message: string) => void;
  /** The reused read buffers (tests pass their own). */
  slots?: ReadSlots;
}

const LIMITS = { spanBytes: CHECKSUM_SPAN_BYTES, readBytes: DATA_CHUNK_BYTES };

export function trackingHandler(
  tracker: Tracker,
  { log = () => undefined, slots = new ReadSlots(READ_SLOTS, DATA_CHUNK_BYTES) }: TrackingHandlerOptions = {},
): (id: number, request: TrackingRequest, write: Write) => void {
  let chain: Promise<unknown> = Promise.resolve();
  const serve = async (request: TrackingRequest, id: number, write: Write, ticket = 0): Promise<void> => {
    const reply = (result: unknown): Promise<void> => write(encode({ type: 'reply', id, result }));
    switch (request.op) {
      case 'enable':
        return reply(await tracker.enable(request.disk));
      case 'freeze': {
        const point = await tracker.freeze(
          request.disks,
          request.pitId,
          request.quiesce,
          request.scripts,
          (warning) => log(`point ${request.pitId}: ${warning}`),
        );
        return reply({
          instant: point.instant,
          disks: Object.keys(point.disks).map((disk) => ({ disk, sizeBytes: tracker.sizeOf(disk) })),
        });
      }
      case 'list':
        return reply({ points: tracker.list(), tracked: await tracker.tracked() });
      case 'release': {
        const released = await tracker.release(request.pitId, request.success);
        // A point kept: its store had room, the overflow episode (agent-store-full) is over.
        if (released.released && request.success) storeSpace.noteKeptPoint();
        return reply(released);
      }
      case 'disable':
        await tracker.disable();
        return reply({});
      case 'changes': {
        const extents = await tracker.changes(request.pitId, request.disk, request.mode);
        return write(...dataPieces(id, Buffer.from(JSON.stringify(extents))));
      }
      case 'hold': {
        // A stop standing holds every disk already, for as long as it stands.
        const stop = tracker.stops.standing();
        return reply(
          stop
            ? { disks: stop.disks, heldAt: stop.stoppedAt }
            : await tracker.holds.hold(ticket, await tracker.tracked()),
        );
      }
      case 'unhold':
        return reply(
          tracker.stops.standing()
            ? { held: true, heldMs: 0, expired: false }
            : await tracker.holds.release(),
        );
      case 'stop-writes':
        await tracker.holds.release(); // a group hold standing: the stop takes its place
        return reply(await tracker.stops.stop(await tracker.stacks()));
      case 'resume-writes': {
        // Tracking disabled while stopped (a committed failover) is finished once writes go on.
        const disable = tracker.stops.standing()?.disableOnResume;
        const resumed = await tracker.stops.resume();
        if (disable) await tracker.disable();
        return reply(resumed);
      }
      case 'read':
        if (request.length > DATA_CHUNK_BYTES)
          throw new TrackingError(
            'Error',
            `a read of at most ${DATA_CHUNK_BYTES} bytes, not ${request.length}`,
          );
        return slots.with(async (buf) => {
          const data = await tracker.readInto(
            buf,
            request.pitId,
            request.disk,
            request.offset,
            request.length,
          );
          // Compressed only in a codec this agent has (an unknown one asked: raw, which every server reads).
          const codec = CODECS.find((c) => c === request.codec);
          const pieces = dataPieces(id, data, codec);
          if (codec) compressed(data.length);
          await write(...pieces);
        });
      case 'checksums':
        return slots.with(async (buf) => {
          // Each part is hashed before the next is read into the same buffer.
          const read = (offset: number, length: number) =>
            tracker.readInto(buf, request.pitId, request.disk, offset, length);
          const sums = await spanChecksums(read, request.offset, request.length, request.blockBytes, LIMITS);
          await write(...dataPieces(id, sums)); // random bytes: never compressed
        });
      default:
        throw new TrackingError('Error', `unknown request ${String((request as { op?: unknown }).op)}`);
    }
  };
  return (id, request, write) => {
    // A hold is numbered as it arrives: an unhold arriving after it cancels it if it has not begun.
    const ticket = request.op === 'hold' ? tracker.holds.ticket() : 0;
    const run = (): Promise<void> =>
      serve(request, id, write, ticket).catch((failure: unknown) => {
        const point = 'pitId' in request ? ` of point ${request.pitId}` : '';
        const err = whenFull(failure, `${request.op}${point} failed`) as Error;
        return write(
          encode({
            type: 'reply',
            id,
            error: { name: err instanceof TrackingError ? err.name : 'Error', message: err.message },
          }),
        );
      });
    // resume-writes stays in line: it must come after a stop sent before it (nothing in the line
    // waits on a stopped disk: a point frozen while stopped needs no era message).
    if (request.op === 'read' || request.op === 'checksums' || request.op === 'unhold') void run();
    else chain = chain.then(run);
  };
}
