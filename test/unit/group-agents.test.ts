// `osr group create` with agent members (operations/group-agents.ts): an agent of another build
// than this release's may not know the group's `hold` request, so it is refused with the upgrade
// that fixes it. Fakes: an agent record store and a compiled agent folder as the shipped bundle
// (the integration test agent-group.test.ts runs groups of current agents against real parts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { bundleVersion } from '../../agent/bundle';
import { OperationError, type ControlContext } from '../../operations/context';
import { checkAgentMembersCanHold } from '../../operations/group-agents';
import type { ProtectedMachine } from '../../shared/replication-types';

const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-group-agents-'));
fs.writeFileSync(path.join(bundle, 'main.js'), '// this release\n');
const shipped = bundleVersion(bundle);
const OLD = '0.1.0+000000000000';

function ctxWith(versions: Record<string, string>): ControlContext {
  return {
    config: { agents: { bundleDir: bundle } },
    vault: {
      read: async (doc: string) => {
        const id = /ag-[0-9a-f]{12}/.exec(doc)?.[0] ?? '';
        const agentVersion = versions[id];
        return agentVersion
          ? { value: { id, facts: { agentVersion, hostname: id }, connected: true } }
          : undefined;
      },
      list: async () => [],
    },
  } as unknown as ControlContext;
}

const agentMember = (name: string, agentId: string): Pick<ProtectedMachine, 'name' | 'source'> => ({
  name,
  source: { type: 'agent', agentId },
});
const libvirtMember = (name: string) =>
  ({ name, source: { type: 'libvirt', domain: name } }) as unknown as Pick<
    ProtectedMachine,
    'name' | 'source'
  >;

test("agents of this release's build, and machines without an agent, pass", async () => {
  const ctx = ctxWith({ 'ag-aaaaaaaaaaaa': shipped, 'ag-bbbbbbbbbbbb': shipped });
  await checkAgentMembersCanHold(ctx, [
    agentMember('db-1', 'ag-aaaaaaaaaaaa'),
    agentMember('web-1', 'ag-bbbbbbbbbbbb'),
    libvirtMember('app-1'),
  ]);
});

test('an agent of another build is refused as bad input, naming the machine, the agent, both versions and the upgrade', async () => {
  const ctx = ctxWith({ 'ag-aaaaaaaaaaaa': shipped, 'ag-bbbbbbbbbbbb': OLD, 'ag-cccccccccccc': OLD });
  await assert.rejects(
    checkAgentMembersCanHold(ctx, [
      agentMember('db-1', 'ag-aaaaaaaaaaaa'),
      agentMember('web-1', 'ag-bbbbbbbbbbbb'),
      agentMember('web-2', 'ag-cccccccccccc'),
    ]),
    (err: unknown) => {
      assert.ok(err instanceof OperationError, String(err));
      assert.equal(err.code, 'invalid');
      assert.match(
        err.message,
        new RegExp(
          `web-1's agent ag-bbbbbbbbbbbb runs ${OLD.replace('+', '\\+')}, not ${shipped.replace('+', '\\+')}`,
        ),
      );
      assert.match(err.message, /web-2's agent ag-cccccccccccc/);
      assert.match(err.message, /`osr agent upgrade ag-bbbbbbbbbbbb`, `osr agent upgrade ag-cccccccccccc`/);
      assert.doesNotMatch(err.message, /db-1/);
      return true;
    },
  );
});
