// `osr export`: a recovery point as a disk image (raw, qcow2 or a fixed VHD), for restore and verification.
import path from 'node:path';
import { Option, type Command } from 'commander';
import {
  EXPORT_FORMATS,
  exportPointAs,
  type ExportFormat,
} from '../../activities/cloud-applier/export-formats';
import { exportTargetProblem } from '../../activities/cloud-applier/export-point';
import { resolvePoint } from '../../operations/points';
import { OperationError } from '../../operations/context';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson } from '../common/output';
import { formatBytes, ProgressLine, renderBar } from '../common/progress-bar';

export function registerExportCommand(program: Command): void {
  program
    .command('export <name>')
    .description(
      'write one disk of a recovery point to an image file: raw (default; sparse where the disk has holes), ' +
        'qcow2 (converted by qemu-img through a temporary raw file beside the output) or vhd (a fixed VHD: ' +
        'the disk rounded up to a MiB plus a footer, the format Azure imports as a managed disk)',
    )
    .requiredOption(
      '--point <id>',
      'latest, latest-app, a point id, an ISO time, or group:<group>[/<id>] (the newest point at or before it)',
    )
    .option('--disk <disk>', 'disk id (e.g. disk0) or index', '0')
    .requiredOption('--out <file>', 'image file to write')
    .addOption(
      new Option('--format <format>', 'image format of the file').choices(EXPORT_FORMATS).default('raw'),
    )
    .option('--force', 'overwrite the file if it exists')
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        o: {
          point: string;
          disk: string;
          out: string;
          format: ExportFormat;
          force?: boolean;
          json?: boolean;
        },
      ) => {
        checkOutFile(path.resolve(o.out), Boolean(o.force));
        await withContext(async (ctx) => {
          const point = await resolvePoint(ctx, name, o.point);
          const disk = /^\d+$/.test(o.disk)
            ? point.disks[Number(o.disk)]
            : point.disks.find((d) => d.diskId === o.disk);
          if (!disk) {
            throw new OperationError(
              `point ${point.id} has no disk ${o.disk}; it has ${point.disks.map((d) => d.diskId).join(', ')}`,
              'not-found',
            );
          }
          const line = new ProgressLine();
          const started = Date.now();
          const { bytes, virtualBytes } = await exportPointAs(ctx, {
            point,
            diskId: disk.diskId,
            outFile: path.resolve(o.out),
            format: o.format,
            onProgress: (done: number, total: number) =>
              line.update(`${renderBar(done, total)} ${formatBytes(done)} / ${formatBytes(total)}`),
          });
          line.done();
          const result = {
            machine: name,
            point: point.id,
            instant: point.instant,
            disk: disk.diskId,
            file: path.resolve(o.out),
            format: o.format,
            virtualBytes,
            bytes,
            seconds: (Date.now() - started) / 1000,
          };
          if (o.json) printJson(result);
          else
            process.stdout.write(
              `exported ${name} ${disk.diskId} at ${point.instant} (point ${point.id}) to ${result.file} (${o.format}): ${formatBytes(bytes)} written\n`,
            );
        });
      },
    );
}

/** Refuses, before anything is fetched, an output path that cannot be written or would be overwritten. */
function checkOutFile(file: string, force: boolean): void {
  const problem = exportTargetProblem(file, force);
  if (problem) throw new CliError(problem, EXIT.usage);
}
