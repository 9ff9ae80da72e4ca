// The OpenAPI description of a machine's recovery settings (api/recovery-routes.ts): the recovery
// target and the platform recorded at protect. Merged into api/openapi.ts's document.
import { body, closedObject, json, machineErrors, machineName, ref, type Schema } from './openapi-common';

const subnet = (what: string): Schema => ({
  type: ['string', 'null'],
  description: `${what}: a subnet resource id (/subscriptions/…/virtualNetworks/<vnet>/subnets/<subnet>)`,
});

const azure: Schema = {
  ...closedObject({
    resourceGroup: { type: 'string', description: 'where disks, NIC and VM are made' },
    location: { type: ['string', 'null'], description: 'region (default: azure.location)' },
    vmSize: { type: 'string', example: 'Standard_D2s_v5' },
    osDiskType: { enum: ['Standard_LRS', 'Premium_LRS', 'StandardSSD_LRS'] },
    subnetId: subnet('production subnet, for failovers'),
    drillSubnetId: subnet('isolated subnet for drills (default: azure.drillSubnetId)'),
    drillOnProductionSubnet: {
      type: ['boolean', 'null'],
      description: 'lets drills use the production subnet (never its IP)',
    },
    privateIp: { type: ['string', 'null'], description: 'static private IP of a failover' },
    sourceNetwork: {
      type: ['string', 'null'],
      description: "the machine's primary-site network, which recovery plans map to subnets",
    },
  }),
  description: 'azure target settings; in a change, a field set to null is removed',
};

const libvirt: Schema = {
  ...closedObject({
    recoveryHost: {
      type: 'string',
      description:
        'a libvirt host added with `osr host add <name> --libvirt <uri>`, local to the cloud applier (qemu:///system); an unknown, non-libvirt or remote host is refused (400/404) with the fix',
    },
    drillNetwork: {
      type: ['string', 'null'],
      description:
        'an existing libvirt network drills use (default: an isolated network OSR makes per drill)',
    },
    networks: {
      type: ['object', 'null'],
      additionalProperties: { type: 'string' },
      description:
        'primary-site network (or bridge) → libvirt network a failed-over NIC goes on; NICs not named are kept',
    },
    consolePattern: {
      type: ['string', 'null'],
      description:
        'without a guest agent, the guest is up once its serial console shows a line matching this regular expression (default `login:`)',
    },
    bootTimeoutSeconds: {
      type: ['number', 'null'],
      description: 'how long the boot probe waits for the guest agent or serial console (default 300)',
    },
  }),
  description: 'libvirt target settings; in a change, a field set to null is removed',
};

const platform: Schema = closedObject({
  osType: { enum: ['Linux', 'Windows'] },
  hyperVGeneration: { enum: ['V1', 'V2'], description: 'V1: BIOS boot (QEMU default); V2: UEFI' },
});

export const recoverySchemas: Record<string, Schema> = {
  RecoverySettings: {
    type: 'object',
    required: ['machine', 'platform'],
    properties: {
      machine: { type: 'string' },
      target: { enum: ['local', 'azure', 'libvirt'], description: 'absent: local' },
      azure,
      libvirt,
      bootCheck: { type: 'object' },
      materialize: { type: 'object' },
      platform: { ...platform, description: 'recorded at protect (default Linux, V1)' },
    },
  },
};

export const recoveryPaths = {
  '/v1/machines/{name}/recovery-settings': {
    get: {
      operationId: 'getRecoverySettings',
      summary: "a machine's recovery target, its azure settings and its platform",
      tags: ['recovery'],
      parameters: [machineName],
      responses: {
        '200': { description: 'the settings', ...json(ref('RecoverySettings')) },
        ...machineErrors,
      },
    },
    post: {
      operationId: 'changeRecoverySettings',
      summary:
        "change a machine's recovery target (local, azure or libvirt), its azure or libvirt settings (merged) and its platform; refused with the fix when the azure target would lack a field, or the libvirt target a recovery host or the domain definition kept at protect",
      tags: ['recovery'],
      parameters: [machineName],
      requestBody: body(
        closedObject({ target: { enum: ['local', 'azure', 'libvirt'] }, azure, libvirt, platform }),
      ),
      responses: {
        '200': { description: 'the settings now', ...json(ref('RecoverySettings')) },
        ...machineErrors,
      },
    },
  },
};
