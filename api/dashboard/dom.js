// Small helpers: building elements (h, s for SVG), formatting (durations, times, bytes), badges,
// toasts. Every text goes into the page as a text node, never as HTML.
/* global document, window, setTimeout */

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof window.Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function duration(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const n = Math.round(seconds);
  if (n < 120) return `${n} s`;
  if (n < 7200) return `${Math.round(n / 60)} min`;
  if (n < 172800) return `${Math.round(n / 3600)} h`;
  return `${Math.round(n / 86400)} d`;
}

export function ago(iso) {
  if (!iso) return '—';
  return `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

export function clock(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function badge(text, tone) {
  return h('span', { class: `badge ${tone || ''}` }, text);
}

export function stateTone(st) {
  if (
    ['protected', 'ready', 'done', 'committed', 'failed-over', 'cleaned-up', 'completed', 'ok'].includes(st)
  )
    return 'ok';
  if (
    ['failed', 'timed-out', 'terminated', 'critical', 'stale', 'cut-failed', 'ended-outside-osr'].includes(st)
  )
    return 'bad';
  if (st === 'healthy') return 'ok';
  return 'warn';
}

export function toast(message, bad) {
  const el = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status' }, message);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), bad ? 9000 : 5000);
}

export function replace(id, ...children) {
  const el = document.getElementById(id);
  el.replaceChildren(...children.flat());
  return el;
}
