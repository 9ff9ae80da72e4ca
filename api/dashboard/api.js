// The API with the bearer token (from #token=… once, then sessionStorage), and the sign-in dialog.
/* global document, sessionStorage, localStorage, fetch, history, location, URLSearchParams */
import { refresh, state } from './state.js';

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (state.operator) headers['X-OSR-Operator'] = state.operator;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) {
    signOut('The token was refused; enter it again.');
    throw new ApiError(401, data.error ? data.error.message : 'unauthorized');
  }
  if (!res.ok) throw new ApiError(res.status, data.error ? data.error.message : `HTTP ${res.status}`);
  return data;
}

export const jobPath = (workflowId) => `/v1/jobs/${encodeURIComponent(workflowId)}`;

// ---------- sign-in ----------

export function readToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    sessionStorage.setItem('osr-token', fromUrl);
    // The token leaves the address bar (and history) at once.
    history.replaceState(null, '', location.pathname + location.search);
  }
  state.token = sessionStorage.getItem('osr-token') || '';
  state.operator = localStorage.getItem('osr-operator') || '';
}

export function signOut(message) {
  sessionStorage.removeItem('osr-token');
  state.token = '';
  state.me = undefined;
  const dialog = document.getElementById('login');
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('login-name').value = state.operator;
  if (!dialog.open) dialog.showModal();
}

export function setupLogin() {
  document.getElementById('login-form').addEventListener('submit', () => {
    state.token = document.getElementById('login-token').value.trim();
    state.operator = document.getElementById('login-name').value.trim();
    sessionStorage.setItem('osr-token', state.token);
    localStorage.setItem('osr-operator', state.operator);
    refresh();
  });
  document.getElementById('login').addEventListener('cancel', (e) => e.preventDefault());
  document.getElementById('signout').addEventListener('click', () => signOut(''));
}
