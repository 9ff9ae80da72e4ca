#!/usr/bin/env node
// Entry point of the `osr` command: runs the compiled CLI.
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write(
    'osr: the CLI is not built yet. Fix: run `npm run setup` (or `npm run build`) in the project folder.\n',
  );
  process.exit(2);
}
require(main).run(process.argv);
