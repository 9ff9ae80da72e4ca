// Routes for hosts and discovery (operations/host-admin.ts, operations/discovery.ts): the same
// operations as `osr host …` and `osr discover`. Each host is listed with its process servers
// (live and stale), so the dashboard shows which host lost its server.
import { hostServerProblem, hostServers, listServers } from '../lib/observability/server-health';
import { addHost, removeHost } from '../operations/host-admin';
import { getHost, listHosts } from '../operations/hosts';
import { discover, protectDiscovered } from '../operations/discovery';
import { jobLocation } from './jobs';
import type { ControlContext } from '../operations/context';
import type { HostConnection, HostRecord } from '../shared/host-types';
import { checkName } from '../shared/names';
import { onlyFields, optionalEnum, optionalString, requiredString, type JsonObject } from './body';
import type { ApiResponse, Route } from './router';

const ok = (body: unknown): ApiResponse => ({ status: 200, body });
const KINDS = ['vcenter', 'sockets', 'libvirt'] as const;

function connectionFrom(body: JsonObject): HostConnection {
  const kind = optionalEnum(body, 'kind', KINDS);
  if (!kind) return requiredString(body, 'kind', `one of ${KINDS.join(', ')}`) as never;
  if (kind === 'vcenter') {
    onlyFields(body, ['name', 'kind', 'url', 'user', 'passwordFile', 'thumbprint']);
    return {
      kind,
      url: requiredString(body, 'url', 'the vCenter SDK address, https://<vcenter>/sdk'),
      user: requiredString(body, 'user', 'the vCenter user discovery reads as'),
      passwordFile: requiredString(body, 'passwordFile', "an absolute path on the host's process server"),
      thumbprint: optionalString(body, 'thumbprint', 'the SHA-256 fingerprint of the certificate to pin'),
    };
  }
  if (kind === 'sockets') {
    onlyFields(body, ['name', 'kind', 'dir']);
    return { kind, dir: requiredString(body, 'dir', 'an absolute directory of QMP sockets on the host') };
  }
  onlyFields(body, ['name', 'kind', 'uri']);
  return { kind, uri: requiredString(body, 'uri', 'a libvirt URI, e.g. qemu:///system') };
}

/** Hosts with their process servers: live and stale ids, and the problem when none is live. */
async function hostsWithServers(ctx: ControlContext, hosts: HostRecord[]) {
  const servers = hostServers(
    await listServers(ctx.vault, ctx.config),
    hosts.map((h) => h.name),
  );
  return hosts.map((h, i) => {
    const s = servers[i] as (typeof servers)[number];
    const problem = hostServerProblem(s, ctx.config.health.heartbeatSeconds);
    return {
      ...h,
      servers: { live: s.live, stale: s.stale },
      ...(problem ? { serverProblem: problem } : {}),
    };
  });
}

export const hostRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/hosts',
    handler: async (req) => ok({ hosts: await hostsWithServers(req.ctx, await listHosts(req.ctx)) }),
  },
  {
    method: 'POST',
    path: '/v1/hosts',
    handler: async (req) => {
      const body = await req.body();
      const name = checkName('host', requiredString(body, 'name', 'the host name'));
      const added = await addHost(req.ctx, { name, connection: connectionFrom(body) });
      return { status: 201, body: added };
    },
  },
  {
    method: 'GET',
    path: '/v1/hosts/{name}',
    handler: async (req) => {
      const [h] = await hostsWithServers(req.ctx, [await getHost(req.ctx, req.params.name as string)]);
      return ok(h);
    },
  },
  {
    method: 'POST',
    path: '/v1/hosts/{name}/remove',
    handler: async (req) => {
      onlyFields(await req.body(), []);
      return ok({ removed: (await removeHost(req.ctx, req.params.name as string)).name });
    },
  },
  {
    method: 'POST',
    path: '/v1/hosts/{name}/protect',
    handler: async (req) => {
      const body = await req.body();
      onlyFields(body, ['machine', 'as', 'policy', 'nbdSocket']);
      const started = await protectDiscovered(req.ctx, {
        host: req.params.name as string,
        machine: requiredString(body, 'machine', 'the machine as discovered on the host'),
        as: optionalString(body, 'as', 'the name to protect it as'),
        policy: optionalString(body, 'policy', 'a policy name'),
        nbdSocket: optionalString(
          body,
          'nbdSocket',
          "the socket of the NBD server the machine's QEMU already runs",
        ),
      });
      const location = jobLocation(started.workflowId);
      return { status: 202, body: { ...started, location }, headers: { Location: location } };
    },
  },
  {
    method: 'GET',
    path: '/v1/discover',
    handler: async (req) => ok(await discover(req.ctx, req.query.get('host') ?? undefined)),
  },
];
