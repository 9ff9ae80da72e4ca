// Activities of the libvirt recovery target, on the cloud applier (the recovery-site host, where
// the recovered images are materialized): define and start a domain from the protected domain's
// own definition (kept in the vault at protect), probe that the guest answers, and remove exactly
// what one recovery made, found by OSR's metadata tag. Each is safe to retry.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { heartbeat, sleep } from '@temporalio/activity';
import { FAILURE } from '../../shared/failures';
import {
  DEFAULT_CONSOLE_PATTERN,
  keptDomainDoc,
  recoveredDomainName,
  type KeptDomain,
  type LibvirtResources,
  type LibvirtTargetSettings,
} from '../../shared/libvirt-target';
import type { MaterializedMachine, RecoveredMachine, RecoveryKind } from '../../shared/recovery-types';
import { recoveryDocs } from '../../shared/recovery-types';
import {
  drillNetworkXml,
  recoveredDomainXml,
  recoveredUuid,
  type OsrTag,
} from '../../lib/libvirt/recovered-domain';
import {
  defineAndStart,
  ensureNetwork,
  guestAgentAnswers,
  handToSessionDaemon,
  NotOursError,
  removeTagged,
  stopTagged,
} from '../../lib/libvirt/recovery-host';
import type { Vault } from '../../lib/azure/vault';
import crypto from 'node:crypto';

export interface LibvirtDefineInput {
  kind: RecoveryKind;
  machine: string;
  job: string;
  settings: LibvirtTargetSettings;
  /** The recovered images (qcow2), materialized without a daemon. */
  materialized: MaterializedMachine;
}

const refused = (message: string) =>
  ApplicationFailure.create({ message, type: FAILURE.LibvirtTargetRefused, nonRetryable: true });

/** A drill's isolated network: its name, and a bridge name within Linux's 15 characters. */
function drillNetworkOf(tag: OsrTag): { name: string; bridge: string } {
  const h = crypto.createHash('sha256').update(`${tag.machine}\n${tag.job}`).digest('hex');
  return { name: `osr-drill-${tag.machine}-${tag.job}`, bridge: `osrd${h.slice(0, 10)}` };
}

/** Where the recovered domain's first serial port writes (in the job's folder of images). */
export function consoleLogOf(materialized: MaterializedMachine): string {
  return path.join(materialized.dir, 'console.log');
}

/** The domain a recovery made, by its record (undefined: not a libvirt recovery, or no record). */
async function recoveredDomainOf(vault: Vault, machine: string, job: string) {
  const record = (await vault.read<RecoveredMachine>(recoveryDocs.recovered(machine, job)))?.value;
  if (!record?.libvirt) return undefined;
  return { uri: record.libvirt.uri, tag: { machine, job, kind: record.kind } satisfies OsrTag };
}

/** Failback: the recovered domain is powered off (kept defined, with its images, until re-enable). */
export async function stopRecoveredDomain(vault: Vault, machine: string, job: string): Promise<string[]> {
  const found = await recoveredDomainOf(vault, machine, job);
  return found ? stopTagged(found.uri, found.tag) : [];
}

/** Re-enable and cleanups: the recovered domain (only what this recovery tagged) goes before its images. */
export async function removeRecoveredDomain(vault: Vault, machine: string, job: string): Promise<string[]> {
  const found = await recoveredDomainOf(vault, machine, job);
  return found ? removeTagged(found.uri, found.tag) : [];
}

export function createLibvirtTargetActivities(deps: { vault: Vault }) {
  return {
    /** Defines the recovered domain on the recovery host (a drill's NICs on an isolated network) and starts it. */
    async libvirtDefineDomain(input: LibvirtDefineInput): Promise<LibvirtResources> {
      const { settings, materialized } = input;
      const tag: OsrTag = { machine: input.machine, job: input.job, kind: input.kind };
      const uri = settings.uri;
      if (!uri) throw refused(`the recovery host ${settings.recoveryHost} of ${input.machine} has no URI`);
      const kept = (await deps.vault.read<KeptDomain>(keptDomainDoc(input.machine)))?.value;
      if (!kept)
        throw refused(
          `the vault keeps no domain definition of ${input.machine} (protected before OSR kept them, or not a libvirt machine): protect it again (\`osr unprotect ${input.machine} --keep-replica\`, then \`osr protect ${input.machine} --host <host> --domain <domain>\`), or recover it with --target local`,
        );
      const network = input.kind === 'drill' && !settings.drillNetwork ? drillNetworkOf(tag) : undefined;
      const consoleLog = consoleLogOf(materialized);
      let made;
      try {
        made = recoveredDomainXml(kept.xml, {
          name: recoveredDomainName(tag.machine, tag.kind, tag.job),
          uuid: recoveredUuid(tag),
          tag,
          disks: materialized.files.map((f) => ({
            target: f.diskId,
            file: f.path,
            format: materialized.format,
          })),
          allNicsOn: input.kind === 'drill' ? (network?.name ?? settings.drillNetwork) : undefined,
          networkMap: settings.networks,
          consoleLog,
        });
      } catch (err) {
        throw refused(
          `the kept definition of ${input.machine} cannot be recovered: ${(err as Error).message}`,
        );
      }
      const name = recoveredDomainName(tag.machine, tag.kind, tag.job);
      // A fresh log: what the probe reads must come from this boot.
      await fs.rm(consoleLog, { force: true });
      handToSessionDaemon(uri, [materialized.dir, ...materialized.files.map((f) => f.path)]);
      try {
        // Nothing to isolate when the domain has no NIC.
        if (network && made.interfaces > 0)
          await ensureNetwork(uri, network.name, drillNetworkXml(network.name, network.bridge, tag), tag);
        await defineAndStart(uri, name, made.xml, tag);
      } catch (err) {
        if (err instanceof NotOursError) throw refused(err.message);
        throw err;
      }
      return {
        host: settings.recoveryHost,
        uri,
        domain: name,
        uuid: recoveredUuid(tag),
        ...(network && made.interfaces > 0 ? { drillNetwork: network.name } : {}),
        ...(made.dropped.length ? { dropped: made.dropped } : {}),
        hears: made.guestAgent ? 'guest-agent' : made.serialConsole ? 'serial-console' : 'nothing',
      };
    },

    /**
     * Waits until the guest answers: its guest agent's guest-ping when the domain has the agent's
     * channel, else output on its serial console (the log the first serial port writes). A guest
     * that does not answer in time is the job's finding, reported, not thrown.
     */
    async libvirtProbeBoot(input: {
      made: LibvirtResources;
      materialized: MaterializedMachine;
      timeoutSeconds?: number;
      consolePattern?: string;
    }): Promise<NonNullable<LibvirtResources['probe']>> {
      const { made } = input;
      const started = Date.now();
      const deadline = started + (input.timeoutSeconds ?? 300) * 1000;
      const seconds = () => Math.round((Date.now() - started) / 100) / 10;
      if (!made.hears || made.hears === 'nothing')
        return {
          ok: false,
          how: 'serial-console',
          detail:
            'the domain has neither a guest agent channel nor a serial port: nothing to hear it boot by',
          seconds: 0,
        };
      let last = '';
      while (Date.now() < deadline) {
        heartbeat();
        if (made.hears === 'guest-agent') {
          const answer = await guestAgentAnswers(made.uri, made.domain);
          if (answer.ok) return { ok: true, how: 'guest-agent', detail: answer.detail, seconds: seconds() };
          last = answer.detail;
        } else {
          const text = await fs.readFile(consoleLogOf(input.materialized), 'utf8').catch(() => '');
          const pattern = new RegExp(input.consolePattern ?? DEFAULT_CONSOLE_PATTERN);
          const line = text.split('\n').find((l) => pattern.test(l));
          if (line)
            return {
              ok: true,
              how: 'serial-console',
              detail: `console: ${line.trim().slice(0, 200)}`,
              seconds: seconds(),
            };
          last = `no line matching /${pattern.source}/ on the serial console yet`;
        }
        await sleep(2000);
      }
      return {
        ok: false,
        how: made.hears,
        detail: `no answer within ${Math.round((deadline - started) / 1000)} s (${last})`,
        seconds: seconds(),
      };
    },

    /** Removes the domains and networks tagged with this recovery on the host its record names. */
    async libvirtRemove(input: { kind: RecoveryKind; machine: string; job: string }): Promise<string[]> {
      const record = (
        await deps.vault.read<RecoveredMachine>(recoveryDocs.recovered(input.machine, input.job))
      )?.value;
      if (!record?.libvirt) return [];
      return removeTagged(record.libvirt.uri, { machine: input.machine, job: input.job, kind: input.kind });
    },
  };
}

export type LibvirtTargetActivities = ReturnType<typeof createLibvirtTargetActivities>;
