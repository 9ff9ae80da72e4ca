// `osr keys list|rotate|forget`: the segment keys (ids and dates only, never key material).
import path from 'node:path';
import type { Command } from 'commander';
import { forgetKey, listKeys, rotateKeys } from '../../operations/keys';
import { withContext } from '../common/context';
import { printJson, printTable } from '../common/output';

export function registerKeysCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('segment encryption keys: list their ids, rotate to a new key, forget a lost one');
  keys
    .command('list')
    .description('ids and creation times of the segment keys the vault records and this host holds')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const rows = await withContext((ctx) => listKeys(ctx));
      for (const r of rows.filter((k) => k.onThisHost === 'missing')) {
        process.stderr.write(
          `osr: warning: key ${r.id} is missing on this host; workers here refuse to start until its ` +
            'file is restored from your backup of the keys folder (docs/operations.md#segment-keys)\n',
        );
      }
      if (o.json) printJson(rows);
      else
        printTable(
          rows.map((r) => ({
            id: r.id,
            state: r.current ? 'current' : 'retired',
            created: r.createdAt,
            retired: r.retiredAt ?? '',
            this_host: r.onThisHost,
          })),
        );
    });
  keys
    .command('rotate')
    .description('make a new key for new segments; the old one stays for segments written with it')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const rotated = await withContext((ctx) => rotateKeys(ctx));
      if (o.json) return printJson(rotated);
      const dir = path.dirname(rotated.keyFile);
      process.stdout.write(
        `new segments are encrypted with key ${rotated.current}; key ${rotated.previous} is retired and kept in ` +
          `${path.join(dir, 'retired')} for segments written with it.\n` +
          'Workers on this host switch within seconds, without a restart. Copy ' +
          `${dir} to every other host running a process server, cloud applier or master target, ` +
          'and back it up now (docs/operations.md#segment-keys).\n',
      );
    });
  keys
    .command('forget <id>')
    .description(
      'drop the record of a key lost for good, so workers start without it (resync what it encrypted)',
    )
    .action(async (id: string) => {
      await withContext((ctx) => forgetKey(ctx, id));
      process.stdout.write(`the vault no longer records key ${id}\n`);
    });
}
