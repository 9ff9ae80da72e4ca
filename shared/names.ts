// Names operators give OSR (in a URL, on the command line, in a plan file) that become parts of
// vault document names, workflow ids and local folders: one check per noun, so that a name like
// "../policies/demo" is refused the same way everywhere (HTTP 400, CLI exit 2) before anything is
// read or written. And the vault's own guard (vaultSegment, vaultPath) under the path builders,
// so that no document name with "/", "..", control characters or an empty part is ever built
// from a name, whatever forgot to check it. Pure: no I/O, safe to import from workflow code.
import { OperationError } from './operation-error';

/** What a name names. */
export type NameKind =
  | 'machine'
  | 'policy'
  | 'plan'
  | 'group'
  | 'host'
  | 'site'
  | 'identity'
  | 'point'
  | 'group-point'
  | 'job';

const LABEL = /^[a-z0-9][a-z0-9-]{0,62}$/;
const LABEL_FIX = 'use lower-case letters, digits and dashes (at most 63)';
/** Ids OSR generates: points 20261125T080000Z-c3, group points …-g3, jobs 20261125T080000000Z. */
const ID = '[A-Za-z0-9][A-Za-z0-9-]{0,127}';
/** A job id, or a workflow id of up to five such parts (drill/<machine>/<job>, plan/<plan>/<operation>/<job>). */
const JOB = new RegExp(`^${ID}(?:/${ID}){0,4}$`);

const RULES: Record<NameKind, { noun: string; pattern: RegExp; fix: string }> = {
  machine: { noun: 'machine name', pattern: LABEL, fix: LABEL_FIX },
  policy: { noun: 'policy name', pattern: LABEL, fix: LABEL_FIX },
  plan: { noun: 'plan name', pattern: LABEL, fix: LABEL_FIX },
  group: { noun: 'group name', pattern: LABEL, fix: LABEL_FIX },
  host: { noun: 'host name', pattern: LABEL, fix: LABEL_FIX },
  // As a site is named in the configuration (lib/config/config.ts).
  site: {
    noun: 'site name',
    pattern: /^[a-z0-9-]{1,40}$/,
    fix: 'use lower-case letters, digits and dashes (at most 40), as the site is named in the configuration',
  },
  identity: { noun: 'identity name', pattern: LABEL, fix: LABEL_FIX },
  point: {
    noun: 'point id',
    pattern: new RegExp(`^${ID}$`),
    fix: 'use a point id as `osr points <machine>` lists it (letters, digits and dashes)',
  },
  'group-point': {
    noun: 'group point id',
    pattern: new RegExp(`^${ID}$`),
    fix: 'use a group point id as `osr group points <group>` lists it (letters, digits and dashes)',
  },
  job: {
    noun: 'job id',
    pattern: JOB,
    fix: 'use a job id or workflow id as OSR lists it (letters, digits and dashes, parts separated by "/", e.g. drill/<machine>/<job>)',
  },
};

/** The value as a message shows it: quoted, escaped (no raw control characters), not too long. */
function shown(value: unknown): string {
  if (typeof value !== 'string') return String(value);
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

/** Whether `value` is a valid name of that kind. */
export function isName(kind: NameKind, value: unknown): value is string {
  return typeof value === 'string' && RULES[kind].pattern.test(value);
}

/** Why `value` is not a valid name of that kind (with the fix), or undefined when it is one. */
export function nameProblem(kind: NameKind, value: unknown): string | undefined {
  if (isName(kind, value)) return undefined;
  const rule = RULES[kind];
  return `${rule.noun} ${shown(value)} is not valid: ${rule.fix}`;
}

/** Refuses (OperationError 'invalid': HTTP 400, CLI exit 2) a name that is not valid; returns it otherwise. */
export function checkName(kind: NameKind, value: unknown): string {
  const problem = nameProblem(kind, value);
  if (problem) throw new OperationError(problem, 'invalid');
  return value as string;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T/;
const POINT_FIX =
  'use latest, latest-app, a point id (letters, digits and dashes), an ISO time, or group:<group>[/<group point id>]';

/**
 * Refuses a recovery point selector whose names are not valid: `latest`, `latest-app`, an ISO
 * time, `group:<group>[/<group point id>]` (both names checked), or a point id.
 */
export function checkPointSelector(selector: unknown): string {
  if (typeof selector !== 'string')
    throw new OperationError(`point ${shown(selector)} is not valid: ${POINT_FIX}`, 'invalid');
  if (selector === 'latest' || selector === 'latest-app') return selector;
  if (ISO_TIME.test(selector) && !Number.isNaN(Date.parse(selector))) return selector;
  if (selector.startsWith('group:')) {
    const rest = selector.slice('group:'.length);
    const slash = rest.indexOf('/');
    checkName('group', slash < 0 ? rest : rest.slice(0, slash));
    if (slash >= 0) checkName('group-point', rest.slice(slash + 1));
    return selector;
  }
  if (!isName('point', selector))
    throw new OperationError(`point ${shown(selector)} is not valid: ${POINT_FIX}`, 'invalid');
  return selector;
}

/** Why `value` cannot be one part of a vault document name, or undefined when it can. */
function segmentProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return 'it is empty';
  if (value === '.' || value === '..') return 'it is "." or ".."';
  if (value.length > 200) return 'it is longer than 200 characters';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'it has control characters';
  if (/[/\\%?#]/.test(value)) return 'it has "/", "\\", "%", "?" or "#"';
  return undefined;
}

/**
 * The vault's guard under every path builder: `value` as one part of a document name, refused
 * (OperationError 'invalid') if it could reach another document. Valid names pass unchanged.
 */
export function vaultSegment(what: string, value: string): string {
  const problem = segmentProblem(value);
  if (problem)
    throw new OperationError(
      `${what} ${shown(value)} cannot be part of a vault document name: ${problem}`,
      'invalid',
    );
  return value;
}

/** Whether a whole vault document name passes vaultPath. */
export function isVaultPath(name: string): boolean {
  return name.split('/').every((part) => segmentProblem(part) === undefined);
}

/**
 * Refuses a whole vault document name (or, with `prefix`, a listing prefix ending in "/") with an
 * empty, "." or ".." part, a backslash, "%", "?", "#" or control characters.
 */
export function vaultPath(name: string, options: { prefix?: boolean } = {}): string {
  const parts = name.split('/');
  if (options.prefix && parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (options.prefix && name === '') return name;
  for (const part of parts) {
    const problem = segmentProblem(part);
    if (problem)
      throw new OperationError(
        `vault document name ${shown(name)} is not valid: its part ${shown(part)} is refused (${problem})`,
        'invalid',
      );
  }
  return name;
}
