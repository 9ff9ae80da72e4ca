// The fixed VHD format, as far as OSR writes it: a fixed VHD is the disk's bytes followed by a
// 512-byte footer (Microsoft "Virtual Hard Disk Image Format Specification", version 1.0,
// "Hard Disk Footer Format"). Azure imports a page blob as a managed disk only when it is a fixed
// VHD whose virtual size is a whole number of MiB, so OSR's replicas are laid out that way:
// [0, virtualBytes) data, [virtualBytes, virtualBytes + 512) footer.
//
// Pure functions, no I/O: building, parsing and checking footers, and the sizes Azure needs.
import { randomUUID } from 'node:crypto';

export const VHD_FOOTER_BYTES = 512;
/** Azure: the virtual size of an imported VHD is a multiple of 1 MiB. */
export const VHD_ALIGN_BYTES = 1024 * 1024;
/** Azure: a page blob holds at most 8 TiB, footer included. */
export const MAX_PAGE_BLOB_BYTES = 8 * 1024 ** 4;
/** The biggest virtual size whose VHD (virtual size + footer) fits in one page blob. */
export const MAX_VHD_VIRTUAL_BYTES =
  Math.floor((MAX_PAGE_BLOB_BYTES - VHD_FOOTER_BYTES) / VHD_ALIGN_BYTES) * VHD_ALIGN_BYTES;

const COOKIE = 'conectix';
const FEATURES_RESERVED = 0x00000002;
const FORMAT_VERSION = 0x00010000;
const FIXED_DATA_OFFSET = 0xffffffffffffffffn;
export const DISK_TYPE_FIXED = 2;
/** Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the VHD timestamp's epoch. */
const VHD_EPOCH_SECONDS = 946684800;
/**
 * Creator application "win " (Hyper-V) and host OS "Wi2k". Readers take a VHD's size from the
 * CHS geometry or from current size depending on the creator: QEMU, for one, reads "win " images
 * by current size and its own or unknown creators by geometry, which is smaller whenever the
 * size is not a whole number of cylinders. Azure and Hyper-V use current size.
 */
export const CREATOR_APP = 'win ';
export const CREATOR_VERSION = 0x000a0000;
export const CREATOR_HOST_OS = 0x5769326b; // "Wi2k"

/** Offsets of the footer's fields. */
const AT = {
  cookie: 0,
  features: 8,
  version: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorVersion: 32,
  creatorHostOs: 36,
  originalSize: 40,
  currentSize: 48,
  cylinders: 56,
  heads: 58,
  sectorsPerTrack: 59,
  diskType: 60,
  checksum: 64,
  uniqueId: 68,
  savedState: 84,
} as const;

export interface ChsGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export interface VhdFooter {
  features: number;
  version: number;
  dataOffset: bigint;
  /** Seconds since 2000-01-01T00:00:00Z. */
  timestamp: number;
  creatorApp: string;
  creatorVersion: number;
  creatorHostOs: number;
  originalSize: number;
  currentSize: number;
  geometry: ChsGeometry;
  diskType: number;
  checksum: number;
  /** Lower-case UUID with dashes. */
  uniqueId: string;
  savedState: number;
}

/** The disk's size rounded up to a whole MiB: the virtual size of its VHD. */
export function vhdVirtualBytes(diskBytes: number): number {
  if (!Number.isSafeInteger(diskBytes) || diskBytes <= 0)
    throw new RangeError(`a disk size must be an integer > 0, got ${diskBytes}`);
  return Math.ceil(diskBytes / VHD_ALIGN_BYTES) * VHD_ALIGN_BYTES;
}

/** The page blob's length for a disk: virtual size + footer. */
export function vhdBlobBytes(diskBytes: number): number {
  return vhdVirtualBytes(diskBytes) + VHD_FOOTER_BYTES;
}

/** CHS geometry of a disk of `bytes` (a multiple of 512), by the algorithm of the VHD specification. */
export function chsGeometry(bytes: number): ChsGeometry {
  let totalSectors = Math.floor(bytes / 512);
  if (totalSectors > 65535 * 16 * 255) totalSectors = 65535 * 16 * 255;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.floor((cylinderTimesHeads + 1023) / 1024);
    if (heads < 4) heads = 4;
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** One's complement of the sum of the footer's bytes, the checksum field counted as zero. */
export function footerChecksum(footer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_BYTES; i++) {
    if (i >= AT.checksum && i < AT.checksum + 4) continue;
    sum += footer[i]!;
  }
  return ~sum >>> 0;
}

export interface BuildFooterInput {
  /** The virtual size: a multiple of 512 (Azure also wants a multiple of 1 MiB; see vhdVirtualBytes). */
  virtualBytes: number;
  /** The disk's UUID, kept for the disk's life; a new one if absent. */
  uniqueId?: string;
  /** Default: now. */
  created?: Date;
}

/** The 512-byte footer of a fixed VHD of `virtualBytes`. */
export function buildVhdFooter(input: BuildFooterInput): Buffer {
  const { virtualBytes } = input;
  if (!Number.isSafeInteger(virtualBytes) || virtualBytes <= 0 || virtualBytes % 512 !== 0)
    throw new RangeError(`a VHD's virtual size must be a positive multiple of 512, got ${virtualBytes}`);
  const uniqueId = input.uniqueId ?? randomUUID();
  const id = Buffer.from(uniqueId.replace(/-/g, ''), 'hex');
  if (id.length !== 16 || !/^[0-9a-f-]{32,36}$/i.test(uniqueId))
    throw new RangeError(`a VHD unique id is a UUID, got ${JSON.stringify(uniqueId)}`);
  const seconds = Math.floor((input.created ?? new Date()).getTime() / 1000) - VHD_EPOCH_SECONDS;
  const geometry = chsGeometry(virtualBytes);

  const f = Buffer.alloc(VHD_FOOTER_BYTES);
  f.write(COOKIE, AT.cookie, 'latin1');
  f.writeUInt32BE(FEATURES_RESERVED, AT.features);
  f.writeUInt32BE(FORMAT_VERSION, AT.version);
  f.writeBigUInt64BE(FIXED_DATA_OFFSET, AT.dataOffset);
  f.writeUInt32BE(Math.max(0, seconds) >>> 0, AT.timestamp);
  f.write(CREATOR_APP, AT.creatorApp, 'latin1');
  f.writeUInt32BE(CREATOR_VERSION, AT.creatorVersion);
  f.writeUInt32BE(CREATOR_HOST_OS, AT.creatorHostOs);
  f.writeBigUInt64BE(BigInt(virtualBytes), AT.originalSize);
  f.writeBigUInt64BE(BigInt(virtualBytes), AT.currentSize);
  f.writeUInt16BE(geometry.cylinders, AT.cylinders);
  f.writeUInt8(geometry.heads, AT.heads);
  f.writeUInt8(geometry.sectorsPerTrack, AT.sectorsPerTrack);
  f.writeUInt32BE(DISK_TYPE_FIXED, AT.diskType);
  id.copy(f, AT.uniqueId);
  f.writeUInt8(0, AT.savedState);
  f.writeUInt32BE(footerChecksum(f), AT.checksum);
  return f;
}

/** Reads a footer's fields; undefined unless it is 512 bytes with the cookie and a correct checksum. */
export function parseVhdFooter(bytes: Buffer): VhdFooter | undefined {
  if (bytes.length !== VHD_FOOTER_BYTES) return undefined;
  if (bytes.toString('latin1', AT.cookie, AT.cookie + 8) !== COOKIE) return undefined;
  const checksum = bytes.readUInt32BE(AT.checksum);
  if (checksum !== footerChecksum(bytes)) return undefined;
  const hex = bytes.toString('hex', AT.uniqueId, AT.uniqueId + 16);
  return {
    features: bytes.readUInt32BE(AT.features),
    version: bytes.readUInt32BE(AT.version),
    dataOffset: bytes.readBigUInt64BE(AT.dataOffset),
    timestamp: bytes.readUInt32BE(AT.timestamp),
    creatorApp: bytes.toString('latin1', AT.creatorApp, AT.creatorApp + 4),
    creatorVersion: bytes.readUInt32BE(AT.creatorVersion),
    creatorHostOs: bytes.readUInt32BE(AT.creatorHostOs),
    originalSize: Number(bytes.readBigUInt64BE(AT.originalSize)),
    currentSize: Number(bytes.readBigUInt64BE(AT.currentSize)),
    geometry: {
      cylinders: bytes.readUInt16BE(AT.cylinders),
      heads: bytes.readUInt8(AT.heads),
      sectorsPerTrack: bytes.readUInt8(AT.sectorsPerTrack),
    },
    diskType: bytes.readUInt32BE(AT.diskType),
    checksum,
    uniqueId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    savedState: bytes.readUInt8(AT.savedState),
  };
}

/**
 * The footer of a fixed VHD of `blobBytes` in all (data + footer), or undefined if `bytes` (the
 * blob's last 512 bytes) is no such footer: wrong cookie or checksum, not fixed, or a current size
 * that does not end where the footer starts.
 */
export function fixedVhdFooterOf(bytes: Buffer, blobBytes: number): VhdFooter | undefined {
  const footer = parseVhdFooter(bytes);
  if (!footer || footer.diskType !== DISK_TYPE_FIXED) return undefined;
  if (footer.currentSize !== blobBytes - VHD_FOOTER_BYTES) return undefined;
  return footer;
}

/** The VHD timestamp of a footer as a Date. */
export function footerDate(footer: Pick<VhdFooter, 'timestamp'>): Date {
  return new Date((footer.timestamp + VHD_EPOCH_SECONDS) * 1000);
}
