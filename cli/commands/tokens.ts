// `osr tokens create|list|revoke`: API identities (a token per person or system, with a role).
// Run locally with vault access; audited as the OS user like every CLI action.
import type { Command } from 'commander';
import { createToken, listTokens, revokeToken, type TokenInfo } from '../../operations/tokens';
import { parseDuration } from '../../shared/policy';
import { isRole, ROLES, type Role } from '../../shared/roles';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

function roleOf(value: string): Role {
  if (!isRole(value)) throw new CliError(`--role: use ${ROLES.join(', ')} (got ${value})`, EXIT.usage);
  return value;
}

const shortTime = (iso?: string) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');

function row(t: TokenInfo) {
  return {
    name: t.name,
    role: t.role,
    created: shortTime(t.createdAt),
    created_by: t.createdBy,
    last_used: shortTime(t.lastUsedAt) || 'never',
    expires: shortTime(t.expiresAt) || 'never',
    state: t.revokedAt
      ? `revoked ${shortTime(t.revokedAt)} by ${t.revokedBy ?? '?'}`
      : t.expiresAt && Date.parse(t.expiresAt) <= Date.now()
        ? 'expired'
        : 'active',
  };
}

export function registerTokenCommands(program: Command): void {
  const tokens = program
    .command('tokens')
    .description(
      `API identities: a bearer token per person or system with a role (${ROLES.join(', ')}); hashed in the vault`,
    );
  tokens
    .command('create <name>')
    .description('make a token; the secret is printed once and stored nowhere (only its salted scrypt hash)')
    .requiredOption(
      '--role <role>',
      'viewer (read), operator (+ drills, points, approvals), admin (+ failover, commit, failback, policies, tokens)',
      roleOf,
    )
    .option('--expires <duration>', 'valid this long (e.g. 90d, 12h); default: until revoked')
    .option('--json', 'print JSON (the token included)')
    .action(async (name: string, o: { role: Role; expires?: string; json?: boolean }) => {
      const expiresInSeconds = o.expires === undefined ? undefined : parseDuration(o.expires, '--expires');
      const made = await withContext((ctx) => createToken(ctx, { name, role: o.role, expiresInSeconds }));
      if (o.json) return printJson({ ...made.token, token: made.secret });
      process.stdout.write(
        `identity ${made.token.name} (${made.token.role}), ${made.token.expiresAt ? `expires ${shortTime(made.token.expiresAt)}` : 'no expiry'}\n` +
          `token (shown once; OSR keeps only its hash):\n  ${made.secret}\n` +
          'use it as: Authorization: Bearer <token> (or in the dashboard sign-in)\n',
      );
    });
  tokens
    .command('list')
    .description('identities: name, role, created, last used, expiry, state (never the secret)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await withContext((ctx) => listTokens(ctx));
      if (o.json) return printJson(list);
      printTable(list.map(row));
      if (!list.some((t) => t.name === 'legacy'))
        process.stdout.write(
          'legacy (admin): the single token of earlier releases (api.token or its file), accepted until `osr tokens revoke legacy`\n',
        );
    });
  tokens
    .command('revoke <name>')
    .description('revoke an identity\'s token at once ("legacy": the single token of earlier releases)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const revoked = await withContext((ctx) => revokeToken(ctx, name));
      if (o.json) return printJson(revoked);
      process.stdout.write(`revoked the token of ${revoked.name} (${revoked.role})\n`);
    });
}
