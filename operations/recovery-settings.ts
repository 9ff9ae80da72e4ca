// Per-machine recovery settings (vault: recovery-settings/<machine>.json): the boot check a drill
// or failover runs, and whether recovered disks are materialized as local images.
import type { RecoverySettings } from '../shared/recovery-types';
import { recoveryDocs } from '../shared/recovery-types';
import { checkName } from '../shared/names';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';
import { registeredMachine } from './machines';

export async function getRecoverySettings(ctx: ControlContext, machine: string): Promise<RecoverySettings> {
  checkName('machine', machine);
  return (await ctx.vault.read<RecoverySettings>(recoveryDocs.settings(machine)))?.value ?? { machine };
}

type RecoveryChange = {
  bootCheck?: RecoverySettings['bootCheck'] | null;
  materialize?: RecoverySettings['materialize'] | null;
};

/** Sets a machine's boot check and materialization (each replaced as given; `null` removes it). */
export const configureRecovery = audited(
  'recovery.configure',
  (ctx: ControlContext, machine: string, change: RecoveryChange) =>
    storeRecoverySettings(ctx, machine, change),
  (_ctx, machine, change) => ({ target: machine, details: { ...change } }),
);

async function storeRecoverySettings(
  ctx: ControlContext,
  machine: string,
  change: {
    bootCheck?: RecoverySettings['bootCheck'] | null;
    materialize?: RecoverySettings['materialize'] | null;
  },
): Promise<RecoverySettings> {
  await registeredMachine(ctx, machine);
  if (change.bootCheck && (!change.bootCheck.command.trim() || !change.bootCheck.probe.trim()))
    throw new OperationError('a boot check needs both a command and a probe command', 'invalid');
  if (change.materialize && !['qcow2', 'raw'].includes(change.materialize.format))
    throw new OperationError(
      `materialize format must be qcow2 or raw, not ${change.materialize.format}`,
      'invalid',
    );
  return ctx.vault.update<RecoverySettings>(recoveryDocs.settings(machine), (current) => {
    const next: RecoverySettings = { ...(current ?? { machine }) };
    if (change.bootCheck === null) delete next.bootCheck;
    else if (change.bootCheck) next.bootCheck = change.bootCheck;
    if (change.materialize === null) delete next.materialize;
    else if (change.materialize) next.materialize = change.materialize;
    return next;
  });
}
