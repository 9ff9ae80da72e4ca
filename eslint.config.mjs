// Lint rules. Workflow code runs in Temporal's deterministic sandbox: it may import only the
// workflow SDK, its own siblings and pure shared types, never I/O, clocks or native modules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const workflowCommon = [
  {
    group: [
      'node:*',
      'fs',
      'fs/*',
      'path',
      'os',
      'net',
      'crypto',
      'child_process',
      'http',
      'https',
      'stream',
      'worker_threads',
      'timers',
      'util',
    ],
    message: 'Workflows must not use Node builtins: do I/O in an activity.',
  },
  {
    group: ['@temporalio/worker', '@temporalio/client', '@temporalio/activity', '@temporalio/testing'],
    message: 'Workflows import only @temporalio/workflow (and @temporalio/common).',
  },
  {
    group: ['@azure/*', 'piscina', 'zstd-napi', 'pino'],
    message: 'Workflows must not import I/O libraries: call an activity.',
  },
  {
    group: ['../activities/*', '../activities/**', '../../activities/*', '../../activities/**'],
    allowTypeImports: true,
    message:
      'Workflows may import activities only as types (import type) and call them through proxyActivities.',
  },
];

// The root's lib/, operations/, stack/ … are I/O; workflows/lib/ is workflow code they share. The
// same relative path means one or the other depending on how deep the importing file is.
const layers = ['lib', 'operations', 'stack', 'workers', 'api', 'cli'];
const workflowLayers = (up) => ({
  group: layers.flatMap((l) => [`${up}${l}/*`, `${up}${l}/**`]),
  message:
    'Workflows import only shared/ (contracts, types, ids), workflows/lib/ and their own siblings: lib/, operations/ and stack/ do I/O.',
});
/** workflows/*.ts */
const workflowForbidden = [...workflowCommon, workflowLayers('../')];
/** workflows/<folder>/*.ts (workflows/lib/ too): `../lib/` is workflows/lib/, the root is `../../`. */
const workflowFolderForbidden = [...workflowCommon, workflowLayers('../../')];

// shared/ is what workflow code may import: an ALLOWLIST, not a denylist. A shared file imports
// only its siblings (shared/contracts/ may also reach shared/ one level up), the workflow SDK's
// pure packages and zod.
const sharedOnly = (siblingPattern) => [
  {
    regex: `^(?!${siblingPattern}|@temporalio/(workflow|common)$|zod$)`,
    message: 'shared/ holds only what workflow code may import: no Node, no I/O, nothing outside shared/.',
  },
];

// lib/ holds Node libraries with no Temporal and no OSR roles in them: it never imports the
// layers that put it together.
const libForbidden = [
  {
    group: [
      '**/activities/**',
      '**/workflows/**',
      '**/operations/**',
      '**/workers/**',
      '**/stack/**',
      '**/api/**',
      '**/cli/**',
    ],
    message:
      'lib/ imports only lib/ and shared/: the roles that use a library depend on it, not the other way.',
  },
  {
    group: ['@temporalio/*'],
    message: 'lib/ has no Temporal in it: wrap a library in an activity (activities/) instead.',
  },
];

// The control plane (operations/, the CLI, the HTTP API) may run on any host: it never opens a
// machine's QMP or NBD socket itself. What needs the machine's host is a process-server activity
// (e.g. probeSource, run through the checkSource workflow).
const controlPlaneForbidden = [
  {
    group: ['**/lib/qemu', '**/lib/qemu/*', '**/lib/qemu/**'],
    message:
      "The control plane does not reach QEMU: the machine's socket is on its own host. Ask a process server (an activity on processServerQueue(site)).",
  },
];

// operations/ is the layer under the CLI and the API, and reaches workflows only through Temporal
// (by name, typed with shared/contracts/): no import cycle through the folders above or beside it.
const operationsForbidden = [
  ...controlPlaneForbidden,
  {
    group: ['**/api/*', '**/api/**', '**/cli/*', '**/cli/**'],
    message: 'operations/ is used by the CLI and the API, never the other way.',
  },
  {
    group: ['**/workflows/*', '**/workflows/**'],
    allowTypeImports: false,
    message:
      "operations/ starts workflows by name; type them with shared/contracts/, not the workflow's code.",
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'dist-*/**', 'node_modules/**', '.osr/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['shared/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: sharedOnly('\\./') }] },
  },
  {
    files: ['shared/*/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: sharedOnly('\\./|\\.\\./[^./][^/]*$') },
      ],
    },
  },
  {
    files: ['api/**/*.ts', 'cli/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: controlPlaneForbidden }] },
  },
  {
    files: ['operations/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: operationsForbidden }] },
  },
  {
    // The dev server's launcher is a library of the stack and of the benchmarks, never the reverse.
    files: ['temporal-dev/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/stack/*', '**/stack/**', '**/operations/*', '**/api/*', '**/cli/*', '**/workers/*'],
              message: 'temporal-dev/ imports only lib/ and shared/: stack/ uses it, not the other way.',
            },
          ],
        },
      ],
    },
  },
  {
    // The agent runs on the protected machine from its compiled folder alone: Node built-ins and
    // its own files, nothing of OSR or node_modules (lib/agents uses its protocol, not the reverse).
    // Its one folder level (agent/tracking) may import agent/ (`../`), never above it.
    files: ['agent/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./|\\.\\./(?!\\.\\.)|node:)',
              message:
                'agent/ imports only node: built-ins and its own files: it is copied alone onto the machine.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: libForbidden }] },
  },
  {
    files: ['workflows/*/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: workflowFolderForbidden }] },
  },
  {
    files: ['workflows/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: workflowForbidden }] },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() in a loop.' },
      ],
      'no-restricted-properties': [
        'error',
        {
          object: 'Math',
          property: 'random',
          message: 'Math.random is replaced in workflows; prefer uuid4() for ids.',
        },
      ],
    },
  },
);
