// The OpenAPI description of the host and discovery routes (api/host-routes.ts).
import {
  body,
  common,
  error,
  json,
  listOf,
  protectionStarted,
  ref,
  type Operation,
  type Parameter,
  type Schema,
} from './openapi-common';

const hostName: Parameter = {
  name: 'name',
  in: 'path',
  required: true,
  description: 'host name',
  schema: { type: 'string' },
};

export const hostPaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/hosts': {
    get: {
      operationId: 'listHosts',
      summary:
        'the added hosts, each with its process servers (live, stale) and, when none is live, the problem',
      tags: ['hosts'],
      responses: { '200': { description: 'hosts', ...listOf('hosts', 'Host') }, ...common },
    },
    post: {
      operationId: 'addHost',
      summary:
        'add a host: a process server started for it (--host <name>) reads it first; nothing is registered when it does not answer',
      tags: ['hosts'],
      requestBody: body({
        oneOf: [
          {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'kind', 'url', 'user', 'passwordFile'],
            properties: {
              name: { type: 'string' },
              kind: { const: 'vcenter' },
              url: { type: 'string', description: 'https://<vcenter>/sdk' },
              user: { type: 'string' },
              passwordFile: { type: 'string', description: "absolute path on the host's process server" },
              thumbprint: {
                type: 'string',
                description: 'SHA-256 fingerprint of a self-signed certificate to pin',
              },
            },
          },
          {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'kind', 'dir'],
            properties: { name: { type: 'string' }, kind: { const: 'sockets' }, dir: { type: 'string' } },
          },
          {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'kind', 'uri'],
            properties: {
              name: { type: 'string' },
              kind: { const: 'libvirt' },
              uri: {
                type: 'string',
                description:
                  "qemu:///system on the host's process server, or a remote host over SSH: qemu+ssh://user@host[:port]/system?keyfile=… (host key in the process server's ~/.ssh/known_hosts) or qemu+libssh://…?keyfile=…&known_hosts=<file>. Refused (400): no_verify=1, known_hosts_verify=ignore|auto, known_hosts= on qemu+ssh, remote URIs not over SSH; an unreachable host, an unknown or changed host key or a refused key are refused with the fix, nothing registered.",
              },
            },
          },
        ],
      }),
      responses: {
        '201': {
          description: 'added, with how many machines its check found',
          ...json({ type: 'object', properties: { host: ref('Host'), machines: { type: 'integer' } } }),
        },
        ...common,
        '400': error(
          'bad body, or the host refused: unreachable, wrong credentials, a certificate neither trusted nor pinned (the message shows its fingerprint), a missing directory',
        ),
        '409': error('the host exists (add), or a protected machine runs on it (remove)'),
        '503': error(
          'no process server of the host answered (start one with --host <name>), or Temporal is down',
        ),
      },
    },
  },
  '/v1/hosts/{name}': {
    get: {
      operationId: 'getHost',
      summary: 'one host with its process servers',
      tags: ['hosts'],
      parameters: [hostName],
      responses: {
        '200': { description: 'the host', ...json(ref('Host')) },
        ...common,
        '404': error('no such host'),
      },
    },
  },
  '/v1/hosts/{name}/remove': {
    post: {
      operationId: 'removeHost',
      summary: 'remove a host (refused while a protected machine runs on it)',
      tags: ['hosts'],
      parameters: [hostName],
      responses: {
        '200': {
          description: 'removed',
          ...json({ type: 'object', properties: { removed: { type: 'string' } } }),
        },
        ...common,
        '404': error('no such host'),
        '409': error('the host exists (add), or a protected machine runs on it (remove)'),
      },
    },
  },
  '/v1/hosts/{name}/protect': {
    post: {
      operationId: 'protectDiscovered',
      summary:
        "protect a machine the host discovered (QEMU sockets): its monitor is the one the host's process server found",
      tags: ['hosts'],
      parameters: [hostName],
      requestBody: body({
        type: 'object',
        additionalProperties: false,
        required: ['machine'],
        properties: {
          machine: { type: 'string', description: 'the machine as discovered' },
          as: { type: 'string', description: 'the name to protect it as (default: the discovered name)' },
          policy: { type: 'string' },
          nbdSocket: {
            type: 'string',
            description: "the NBD server the machine's QEMU already runs, if any",
          },
        },
      }),
      responses: {
        '202': protectionStarted,
        ...common,
        '400': error('the machine cannot be tracked from the host (the reason says what protects it)'),
        '404': error('no such host or machine'),
        '409': error('already protected'),
      },
    },
  },
  '/v1/discover': {
    get: {
      operationId: 'discover',
      summary: "every added host's machines (or one host's), as the host's process servers see them",
      tags: ['hosts'],
      parameters: [
        {
          name: 'host',
          in: 'query',
          required: false,
          description: 'only this host',
          schema: { type: 'string' },
        },
      ],
      responses: {
        '200': {
          description: 'machines, and each host asked (a host that could not be read says why)',
          ...json({
            type: 'object',
            properties: {
              machines: { type: 'array', items: ref('DiscoveredMachine') },
              hosts: { type: 'array', items: ref('HostDiscovery') },
            },
          }),
        },
        ...common,
        '400': error('the named host refused (the message says why and the fix)'),
        '404': error('no such host'),
        '503': error('no process server of the named host answered'),
      },
    },
  },
};

export const hostSchemas: Record<string, Schema> = {
  Host: {
    type: 'object',
    required: ['name', 'kind', 'site', 'createdAt'],
    properties: {
      name: { type: 'string' },
      kind: { enum: ['vcenter', 'sockets', 'libvirt'] },
      site: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      url: { type: 'string' },
      user: { type: 'string' },
      passwordFile: { type: 'string' },
      thumbprint: { type: 'string' },
      dir: { type: 'string' },
      uri: { type: 'string' },
      servers: {
        type: 'object',
        properties: {
          live: { type: 'array', items: { type: 'string' } },
          stale: { type: 'array', items: { type: 'string' } },
        },
      },
      serverProblem: { type: 'string', description: 'set when no process server of the host is live' },
    },
  },
  DiscoveredMachine: {
    type: 'object',
    required: ['host', 'name', 'state', 'disks', 'changeTracking'],
    properties: {
      host: { type: 'string' },
      name: { type: 'string' },
      state: { type: 'string', description: 'as the host says it: running, poweredOn, poweredOff, …' },
      disks: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            diskId: { type: 'string' },
            sizeBytes: { type: 'integer' },
            format: { type: 'string' },
            location: { type: 'string' },
            persistentTracking: { type: 'boolean' },
          },
        },
      },
      changeTracking: {
        type: 'object',
        properties: { possible: { type: 'boolean' }, reason: { type: 'string' } },
      },
      protectedAs: { type: 'string' },
      agentId: {
        type: 'string',
        description:
          'a vCenter VM with an enrolled agent: protect it with `osr protect <name> --agent <agentId>`',
      },
      guestOs: { type: 'string' },
      ipAddresses: { type: 'array', items: { type: 'string' } },
      details: {
        type: 'object',
        additionalProperties: { type: 'string' },
        description: 'vCenter: datacenter, esxiHost, vmId (moref), instanceUuid, guestIp (VMware Tools)',
      },
    },
  },
  HostDiscovery: {
    type: 'object',
    properties: {
      host: { type: 'string' },
      kind: { type: 'string' },
      ok: { type: 'boolean' },
      machines: { type: 'integer' },
      problem: { type: 'string' },
      message: { type: 'string' },
    },
  },
};
