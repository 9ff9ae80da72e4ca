// Lint rules. Workflow code runs in Temporal's deterministic sandbox: it may import only the
// workflow SDK, its own siblings and pure shared types, never I/O, clocks or native modules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const workflowForbidden = [
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
    group: ['../activities/*', '../activities/**', '../workers/*'],
    allowTypeImports: true,
    message:
      'Workflows may import activities only as types (import type) and call them through proxyActivities.',
  },
  {
    group: [
      '../shared/config',
      '../shared/storage',
      '../shared/logger',
      '../shared/stack/*',
      '../shared/temporal-connection',
    ],
    allowTypeImports: true,
    message: 'This shared module does I/O: workflows may import only its types.',
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
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: workflowForbidden }],
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
