// The page's shared mutable state, in one module every other imports. The refresh is registered
// here by app.js: the modules that ask for one (sign-in, actions) are imported by app.js, so they
// reach it through this module rather than importing app.js back.

export const REFRESH_MS = 4000;
export const state = {
  token: '',
  operator: '',
  points: new Map(), // machine -> { lastId, points }
  tracked: new Map(), // workflowId -> { label, status, progress, done }
  busy: false,
  me: undefined, // GET /v1/me: { name, role, allowed: ["POST /v1/...", ...] }
};

/**
 * Whether the signed-in identity may call a route ("METHOD /path/{param}", as api/access.ts names
 * it): buttons for what the role cannot do are not drawn. The API refuses them anyway (403).
 */
export function can(route) {
  return Boolean(state.me && state.me.allowed.includes(route));
}

let refresher = async () => {};

/** app.js registers its refresh once, before the page starts. */
export function onRefresh(fn) {
  refresher = fn;
}

/** Reread the API and redraw the page (does nothing while a refresh runs or before sign-in). */
export function refresh() {
  return refresher();
}
