// The agent bundle (agent/bundle.ts): its version follows every byte of the compiled files, and an
// upgrade unpacks only bytes with the expected SHA-256, inside the agent's folder.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { bundleVersion, packBundle, PACKAGE_VERSION, sha256, unpackBundle } from '../../agent/bundle';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'osr-bundle-'));

function agentDir(): string {
  const dir = tmp();
  fs.mkdirSync(path.join(dir, 'tracking'));
  fs.writeFileSync(path.join(dir, 'main.js'), 'console.log(1);\n');
  fs.writeFileSync(path.join(dir, 'tracking', 'dm.js'), 'module.exports = {};\n');
  return dir;
}

test('the package version is package.json’s', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(PACKAGE_VERSION, pkg.version);
});

test('a bundle unpacks to the same version; one changed byte is another version', () => {
  const dir = agentDir();
  const packed = packBundle(dir);
  assert.match(packed.version, /^\d+\.\d+\.\d+\+[0-9a-f]{12}$/);
  const into = path.join(tmp(), 'agent.new');
  assert.equal(unpackBundle(packed.bytes, packed.sha256, into), packed.version);
  assert.equal(fs.readFileSync(path.join(into, 'tracking', 'dm.js'), 'utf8'), 'module.exports = {};\n');
  fs.appendFileSync(path.join(dir, 'main.js'), '// marker\n');
  assert.notEqual(bundleVersion(dir), packed.version);
});

test('bytes with another SHA-256, or a file outside the folder, are refused and nothing is written', () => {
  const packed = packBundle(agentDir());
  const into = path.join(tmp(), 'agent.new');
  const bad = Buffer.from(packed.bytes);
  bad.writeUInt8((bad.at(-3) ?? 0) ^ 1, bad.length - 3);
  assert.throws(
    () => unpackBundle(bad, packed.sha256, into),
    /the bundle's SHA-256 is [0-9a-f]{64}, not the expected/,
  );
  assert.equal(fs.existsSync(into), false);
  const escape = Buffer.from(JSON.stringify({ files: { 'main.js': 'eA==', '../evil.js': 'eA==' } }));
  assert.throws(() => unpackBundle(escape, sha256(escape), into), /outside the agent's folder/);
  assert.equal(fs.existsSync(into), false);
  assert.equal(fs.existsSync(path.join(into, '..', 'evil.js')), false);
});
