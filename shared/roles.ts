// The roles an API identity holds, ranked: an operator may do what a viewer may, an admin
// everything. Which route needs which role is api/access.ts. Pure: safe in workflow code.
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Whether an identity holding `held` has at least the role `needed`. */
export function hasRole(held: Role, needed: Role): boolean {
  return RANK[held] >= RANK[needed];
}
