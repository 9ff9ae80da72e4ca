// Activities of the azure recovery target, one per step, each safe to retry: managed disks
// imported from the failover blobs, the NIC, the VM, and the removal of exactly what one recovery
// made (by tag). ARM long-running operations are polled by the SDK; a retried create finds its own
// resource by its deterministic name and tags instead of making a second one.
import { plainBlobUrl } from '../../lib/azure/storage-secrets';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';
import type {
  AzurePlacement,
  AzureResources,
  AzureTargetSettings,
  RecoveredDisk,
  RecoveredMachine,
  RecoveryKind,
} from '../../shared/recovery-types';
import { recoveryDocs } from '../../shared/recovery-types';
import type { MachinePlatform } from '../../shared/replication-types';
import { armConfigProblem, createArmClients, type ArmClients } from '../../lib/azure-arm/clients';
import { importManagedDisk } from '../../lib/azure-arm/managed-disks';
import { ensureNetworkInterface } from '../../lib/azure-arm/network-interface';
import { ForeignResourceError } from '../../lib/azure-arm/owned';
import { PlacementError, resolvePlacement } from '../../lib/azure-arm/placement';
import { deleteTaggedResources } from '../../lib/azure-arm/tagged-resources';
import { ensureVirtualMachine } from '../../lib/azure-arm/virtual-machine';
import type { RecoveryRef } from '../../lib/azure-arm/naming';
import type { WorkerDeps } from '../deps';
import { failoverBlobClient } from './recovered-disks';

export interface AzureStepInput {
  ref: RecoveryRef;
  settings?: AzureTargetSettings;
  platform?: MachinePlatform;
}

/** ARM answers a retry will not change (bad request, forbidden, not found…), as non-retryable. */
function refused(err: unknown): unknown {
  const status = (err as { statusCode?: number }).statusCode;
  const permanent =
    status !== undefined && status >= 400 && status < 500 && ![408, 409, 429].includes(status);
  if (err instanceof ForeignResourceError || err instanceof PlacementError || permanent)
    return ApplicationFailure.nonRetryable(
      `${(err as Error).message}${status ? ` (ARM ${status})` : ''}`,
      FAILURE.AzureTargetRefused,
    );
  return err;
}

export function createAzureTargetActivities(deps: WorkerDeps) {
  let arm: ArmClients | undefined;
  const clients = (): ArmClients => {
    const problem = armConfigProblem(deps.config.azure);
    if (problem) throw ApplicationFailure.nonRetryable(problem, FAILURE.AzureTargetRefused);
    return (arm ??= createArmClients(deps.config.azure));
  };
  const placement = (input: AzureStepInput): AzurePlacement =>
    resolvePlacement(deps.config.azure, input.ref.machine, input.settings, input.platform, input.ref.kind);
  const guarded =
    <I, O>(run: (input: I) => Promise<O>) =>
    async (input: I): Promise<O> => {
      try {
        return await run(input);
      } catch (err) {
        throw refused(err);
      }
    };

  return {
    /** Imports every disk of the recovery (the first is the OS disk), in order. */
    azureImportDisks: guarded(async (input: AzureStepInput & { pointId: string; disks: RecoveredDisk[] }) => {
      const p = placement(input);
      const out: AzureResources['disks'] = [];
      for (const [i, d] of input.disks.entries()) {
        // Never the SAS a client's URL carries under storage.auth sas: ARM reads it with storageAccountId.
        const sourceUri = plainBlobUrl(failoverBlobClient(deps.blobService, d.blob).url);
        out.push(
          await importManagedDisk(
            clients(),
            {
              ref: input.ref,
              resourceGroup: p.resourceGroup,
              location: p.location,
              storageAccountId: deps.config.azure.storageAccountId as string,
              diskType: p.osDiskType,
              platform: { osType: p.osType, hyperVGeneration: p.hyperVGeneration },
              pointId: input.pointId,
            },
            { diskId: d.diskId, sourceUri, os: i === 0 },
          ),
        );
      }
      return { placement: p, disks: out };
    }),

    azureCreateNic: guarded((input: AzureStepInput) => {
      const p = placement(input);
      return ensureNetworkInterface(clients(), {
        ref: input.ref,
        resourceGroup: p.resourceGroup,
        location: p.location,
        subnetId: p.subnetId,
        privateIp: p.privateIp,
      });
    }),

    azureCreateVm: guarded((input: AzureStepInput & { diskIds: string[]; nicId: string }) => {
      const p = placement(input);
      return ensureVirtualMachine(clients(), {
        ref: input.ref,
        resourceGroup: p.resourceGroup,
        location: p.location,
        vmSize: p.vmSize,
        platform: { osType: p.osType, hyperVGeneration: p.hyperVGeneration },
        diskIds: input.diskIds,
        nicId: input.nicId,
      });
    }),

    /** Deletes the VM, NIC and disks tagged with this recovery, in the resource group its record names. */
    azureDeleteResources: guarded(async (input: { kind: RecoveryKind; machine: string; job: string }) => {
      const record = (
        await deps.vault.read<RecoveredMachine>(recoveryDocs.recovered(input.machine, input.job))
      )?.value;
      if (!record?.azure) return [];
      const gone = await deleteTaggedResources(clients(), record.azure.resourceGroup, input);
      return gone.map((r) => `${r.type}/${r.name}`);
    }),
  };
}

export type AzureTargetActivities = ReturnType<typeof createAzureTargetActivities>;
