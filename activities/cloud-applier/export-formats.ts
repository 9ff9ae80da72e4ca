// `osr export --format raw|qcow2|vhd`: one disk of a recovery point as an image file in the asked
// format, built on the raw export (export-point.ts), which reads only the disk's bytes [0, size)
// of the snapshot, whether the snapshot is a fixed VHD (replicas since issue #15) or raw (points
// taken before).
// - raw: the disk's bytes, sparse.
// - vhd: a fixed VHD, as Azure imports it: the raw export grown to the virtual size (the disk
//   rounded up to a MiB; the tail is a hole) and a footer with a new unique id (a copy is a new
//   disk to Hyper-V and Azure).
// - qcow2: `qemu-img convert` of the raw export, written to a temporary file beside the output
//   (same file system, so it needs the room of the data) and removed afterwards.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildVhdFooter, vhdVirtualBytes } from '../../lib/disk/vhd';
import { exportPoint, type ExportPointInput } from './export-point';
import type { ApplierDeps } from './replica-disk';

const execFileAsync = promisify(execFile);

export const EXPORT_FORMATS = ['raw', 'qcow2', 'vhd'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportPointAsInput extends ExportPointInput {
  /** Default raw. */
  format?: ExportFormat;
}

export interface ExportedImage {
  /** Bytes of disk data written (holes and the VHD footer not counted), as exportPoint returns. */
  bytes: number;
  format: ExportFormat;
  /** The file's virtual disk size: the disk's size (raw, qcow2) or the VHD's virtual size. */
  virtualBytes: number;
}

export async function exportPointAs(
  deps: Pick<ApplierDeps, 'blobService'>,
  input: ExportPointAsInput,
): Promise<ExportedImage> {
  const format = input.format ?? 'raw';
  if (!(EXPORT_FORMATS as readonly string[]).includes(format))
    throw new RangeError(`export format ${String(format)}: choose one of ${EXPORT_FORMATS.join(', ')}`);
  const disk = input.point.disks.find((d) => d.diskId === input.diskId);
  const sizeBytes = disk?.sizeBytes ?? 0;

  if (format === 'raw') {
    const bytes = await exportPoint(deps, input);
    return { bytes, format, virtualBytes: sizeBytes };
  }

  if (format === 'vhd') {
    const bytes = await exportPoint(deps, input);
    try {
      const virtualBytes = vhdVirtualBytes(sizeBytes);
      const file = await fs.open(input.outFile, 'r+');
      try {
        await file.truncate(virtualBytes);
        const footer = buildVhdFooter({ virtualBytes });
        await file.write(footer, 0, footer.length, virtualBytes);
        await file.sync();
      } finally {
        await file.close();
      }
      return { bytes, format, virtualBytes };
    } catch (err) {
      await fs.unlink(input.outFile).catch(() => undefined);
      throw err;
    }
  }

  // qcow2: the raw export beside the output, converted, then removed.
  const out = path.resolve(input.outFile);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.osr-export-${process.pid}.raw`);
  try {
    const bytes = await exportPoint(deps, { ...input, outFile: tmp });
    try {
      await execFileAsync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', tmp, out]);
    } catch (err) {
      await fs.unlink(out).catch(() => undefined);
      const e = err as { stderr?: string; code?: string };
      throw new Error(
        e.code === 'ENOENT'
          ? 'qemu-img is needed for --format qcow2 and was not found on PATH; install QEMU tools or export raw'
          : `qemu-img convert to qcow2 failed: ${e.stderr?.trim() || String(err)}`,
      );
    }
    return { bytes, format, virtualBytes: sizeBytes };
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
}
