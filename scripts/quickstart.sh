#!/usr/bin/env bash
# The main job on the embedded defaults: set up, start the stack, check every worker role, then
# protect a demo machine (a qemu-storage-daemon disk with a workload writing to it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node bin/osr.js stack up
node bin/osr.js doctor
if node bin/osr.js demo --help >/dev/null 2>&1; then
  node bin/osr.js demo start
fi
cat <<'TXT'

Open Site Recovery is running on the embedded stack.
  Temporal Web UI:   http://127.0.0.1:8233   (workflows: protect/<machine>, doctor/<time>)
  Status:            node bin/osr.js stack status     node bin/osr.js status
  Stop everything:   node bin/osr.js stack down
TXT
