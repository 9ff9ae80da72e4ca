// A machine's platform: the OS type and Hyper-V generation an Azure VM recovered from it needs.
// Recorded at protect (default Linux, V1: QEMU boots by BIOS unless given UEFI firmware) and
// changeable later; machines protected before it was recorded take the default.
import { DEFAULT_PLATFORM, type MachinePlatform, type ProtectedMachine } from '../shared/replication-types';
import { Vault } from '../lib/azure/vault';
import { checkName } from '../shared/names';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

/** The platform given (any letter case), completed with the defaults; refuses unknown values. */
export function platformOf(given: Partial<MachinePlatform> = {}): MachinePlatform {
  const os = given.osType?.toLowerCase();
  const osType =
    os === undefined
      ? DEFAULT_PLATFORM.osType
      : os === 'linux'
        ? 'Linux'
        : os === 'windows'
          ? 'Windows'
          : undefined;
  const gen = given.hyperVGeneration?.toUpperCase() ?? DEFAULT_PLATFORM.hyperVGeneration;
  if (!osType) throw new OperationError(`OS type must be Linux or Windows, not ${given.osType}`, 'invalid');
  if (gen !== 'V1' && gen !== 'V2')
    throw new OperationError(
      `Hyper-V generation must be V1 (BIOS boot) or V2 (UEFI), not ${given.hyperVGeneration}`,
      'invalid',
    );
  return { osType, hyperVGeneration: gen };
}

/** Changes the recorded platform of a protected machine (what is not given stays). */
export const setPlatform = audited(
  'machine.platform',
  async (ctx: ControlContext, name: string, change: Partial<MachinePlatform>): Promise<MachinePlatform> => {
    checkName('machine', name);
    const machine = await ctx.vault.machine(name);
    if (!machine) throw new OperationError(`no protected machine named ${name}`, 'not-found');
    // A field not given (or given as undefined) keeps its recorded value.
    const given = Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined));
    const platform = platformOf({ ...(machine.platform ?? DEFAULT_PLATFORM), ...given });
    await ctx.vault.update<ProtectedMachine>(Vault.machineDoc(name), (current) => ({
      ...(current ?? machine),
      platform,
    }));
    return platform;
  },
  (_ctx, name, change) => ({ target: name, details: { ...change } }),
);
