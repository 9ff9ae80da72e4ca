// Page blobs laid out as fixed VHDs (lib/disk/vhd.ts), which is what Azure imports as a managed
// disk: [0, virtual size) the disk's bytes, then the 512-byte footer. Replicas are kept so, and
// recovered disks made so, by ensureFixedVhd. Readers never look past the data area.
//
// What a blob says about itself:
// - metadata `osrdatabytes`: the disk's size (rounded up to 512) the blob was last made for; the
//   data area every reader stays within. Written after the layout is complete, and carried over
//   by every later setMetadata (setMetadata replaces all metadata: merge with withDataBytes).
// - the footer at the end, when it is a valid fixed-VHD footer for the blob's length.
// Blobs made before OSR wrote VHDs have neither: all of the blob is data.
//
// ensureFixedVhd converts and grows idempotently, so an attempt interrupted anywhere is finished by
// the next: the layout is derived from the blob (its length, its footer, where the recorded data
// size says an earlier footer is), never from what an earlier attempt meant to do.
import { randomUUID } from 'node:crypto';
import type { BlobRequestConditions, PageBlobClient } from '@azure/storage-blob';
import {
  VHD_ALIGN_BYTES,
  VHD_FOOTER_BYTES,
  buildVhdFooter,
  fixedVhdFooterOf,
  footerDate,
  vhdVirtualBytes,
  type VhdFooter,
} from '../disk/vhd';
import { roundUpToPage } from './page-blobs';

/** Blob metadata: the data area's size in bytes (a multiple of 512). */
export const DATA_BYTES_METADATA_KEY = 'osrdatabytes';

export interface VhdBlobState {
  /** The blob's length. */
  blobBytes: number;
  metadata: Record<string, string>;
  /** The valid fixed-VHD footer at the end, if there is one. */
  footer?: VhdFooter;
  /** From metadata, if recorded. */
  recordedDataBytes?: number;
  /** Where data may be: recorded, else the footer's virtual size, else the whole blob (no footer). */
  dataBytes: number;
}

/** The recorded data size, if the metadata holds a sane one. */
export function recordedDataBytes(metadata: Record<string, string>, blobBytes: number): number | undefined {
  const raw = metadata[DATA_BYTES_METADATA_KEY];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 && n % 512 === 0 && n <= blobBytes ? n : undefined;
}

/** `metadata` with the data size set: what every setMetadata on such a blob must write. */
export function withDataBytes(metadata: Record<string, string>, dataBytes: number): Record<string, string> {
  return { ...metadata, [DATA_BYTES_METADATA_KEY]: String(dataBytes) };
}

/** The blob's last 512 bytes as a fixed-VHD footer for its length, or undefined. */
export async function readFixedVhdFooter(
  client: PageBlobClient,
  blobBytes: number,
  conditions?: BlobRequestConditions,
): Promise<VhdFooter | undefined> {
  return readFooterAt(client, blobBytes - VHD_FOOTER_BYTES, conditions);
}

/** A fixed-VHD footer for virtual size `offset` stored at `offset`, or undefined. */
async function readFooterAt(
  client: PageBlobClient,
  offset: number,
  conditions?: BlobRequestConditions,
): Promise<VhdFooter | undefined> {
  if (offset < 512) return undefined;
  const bytes = await client.downloadToBuffer(offset, VHD_FOOTER_BYTES, { conditions });
  return fixedVhdFooterOf(bytes, offset + VHD_FOOTER_BYTES);
}

/** Reads what a blob says about its layout (one Get Properties unless `props` are given, one 512-byte read). */
export async function readVhdBlobState(
  client: PageBlobClient,
  props?: { blobBytes: number; metadata: Record<string, string> },
  conditions?: BlobRequestConditions,
): Promise<VhdBlobState> {
  let blobBytes: number;
  let metadata: Record<string, string>;
  if (props) ({ blobBytes, metadata } = props);
  else {
    const p = await client.getProperties({ conditions });
    blobBytes = p.contentLength ?? 0;
    metadata = p.metadata ?? {};
  }
  const footer = await readFixedVhdFooter(client, blobBytes, conditions);
  const recorded = recordedDataBytes(metadata, blobBytes);
  return {
    blobBytes,
    metadata,
    ...(footer ? { footer } : {}),
    ...(recorded !== undefined ? { recordedDataBytes: recorded } : {}),
    dataBytes: recorded ?? footer?.currentSize ?? blobBytes,
  };
}

export interface FixedVhd {
  virtualBytes: number;
  blobBytes: number;
  uniqueId: string;
  /** This call changed the blob's layout (converted, grew or finished an interrupted change). */
  changed: boolean;
}

const roundUpToMiB = (n: number): number => Math.ceil(n / VHD_ALIGN_BYTES) * VHD_ALIGN_BYTES;

/**
 * Makes an existing page blob a fixed VHD whose data area holds at least `dataBytes`: grows it
 * (never shrinks: callers refuse a smaller disk first), writes the footer at the new end, clears
 * an earlier footer now inside the data area, and records the data size. Data pages are never
 * written. The VHD's unique id is kept from the earlier footer; a blob without one gets a new id.
 */
export async function ensureFixedVhd(
  client: PageBlobClient,
  state: VhdBlobState,
  dataBytes: number,
): Promise<FixedVhd> {
  const { footer, recordedDataBytes: recorded } = state;
  // Never less than what may already hold data (a blob without footer or record: all of it).
  const wantedData = Math.max(roundUpToPage(dataBytes), recorded ?? (footer ? 0 : state.blobBytes));
  // The virtual size the blob already has: its footer's, or (no footer) what its length covers:
  // all of it for a blob from before VHDs, all but a footer's room for one resized by an
  // interrupted attempt (which recorded the data size first).
  const had = footer
    ? footer.currentSize
    : recorded !== undefined
      ? roundUpToMiB(Math.max(recorded, state.blobBytes - VHD_FOOTER_BYTES))
      : roundUpToMiB(state.blobBytes);
  const virtualBytes = Math.max(vhdVirtualBytes(wantedData), had);
  const blobBytes = virtualBytes + VHD_FOOTER_BYTES;
  let changed = false;

  // An earlier footer that is now inside the data area: the one at the end before growing, or,
  // if an interrupted grow left none at the end, the one where the recorded data size ends.
  let earlier: { at: number; footer: VhdFooter } | undefined;
  if (footer && footer.currentSize < virtualBytes) earlier = { at: footer.currentSize, footer };
  else if (recorded !== undefined && roundUpToMiB(recorded) < virtualBytes) {
    const found = await readFooterAt(client, roundUpToMiB(recorded));
    if (found) earlier = { at: roundUpToMiB(recorded), footer: found };
  }

  const done = footer !== undefined && footer.currentSize === virtualBytes;
  let uniqueId = (footer ?? earlier?.footer)?.uniqueId ?? randomUUID();
  if (!done) {
    // Before the layout changes, so an interrupted attempt leaves where the data ends.
    if (recorded === undefined) {
      await client.setMetadata(withDataBytes(state.metadata, state.dataBytes));
      state = { ...state, metadata: withDataBytes(state.metadata, state.dataBytes) };
    }
    if (state.blobBytes !== blobBytes) await client.resize(blobBytes);
    const created = (footer ?? earlier?.footer) ? footerDate((footer ?? earlier?.footer)!) : undefined;
    const next = buildVhdFooter({ virtualBytes, uniqueId, ...(created ? { created } : {}) });
    await client.uploadPages(next, virtualBytes, VHD_FOOTER_BYTES);
    changed = true;
  } else {
    uniqueId = footer.uniqueId;
  }
  if (earlier) {
    await client.clearPages(earlier.at, VHD_FOOTER_BYTES);
    changed = true;
  }
  if (
    state.recordedDataBytes !== wantedData ||
    state.metadata[DATA_BYTES_METADATA_KEY] !== String(wantedData)
  )
    await client.setMetadata(withDataBytes(state.metadata, wantedData));
  return { virtualBytes, blobBytes, uniqueId, changed };
}

/** Creates a page blob as an empty fixed VHD for a disk of `dataBytes`; false if it exists already. */
export async function createFixedVhd(
  client: PageBlobClient,
  dataBytes: number,
  metadata: Record<string, string> = {},
): Promise<boolean> {
  const data = roundUpToPage(dataBytes);
  const virtualBytes = vhdVirtualBytes(data);
  const res = await client.createIfNotExists(virtualBytes + VHD_FOOTER_BYTES, {
    metadata: withDataBytes(metadata, data),
  });
  if (!res.succeeded) return false;
  await client.uploadPages(buildVhdFooter({ virtualBytes }), virtualBytes, VHD_FOOTER_BYTES);
  return true;
}
