#!/usr/bin/env bash
# The main job on the embedded defaults: set up, start the stack, check every worker role, then
# protect a demo machine (a qemu-storage-daemon disk with a workload writing to it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node bin/osr.js stack up
node bin/osr.js doctor
# Machines protected before this run (the embedded stack keeps its state in .osr/): say so, and how
# to start clean, so nobody mistakes them for something this quickstart made.
earlier=$(node bin/osr.js status --json | node -e '
  let t = ""; process.stdin.on("data", (c) => (t += c)).on("end", () => {
    const all = JSON.parse(t);
    process.stdout.write(all.map((m) => m.machine).join(", "));
  });')
node bin/osr.js demo start
if [ -n "$earlier" ]; then
  echo
  echo "Reusing the state of an earlier run: these machines were already there: $earlier"
  echo "  To start clean: node bin/osr.js stack reset   (asks before it deletes anything)"
fi
cat <<'TXT'

Open Site Recovery is running on the embedded stack.
  Temporal Web UI:   http://127.0.0.1:8233   (workflows: protect/<machine>, doctor/<time>)
  Machines view:     http://127.0.0.1:8233/namespaces/default/workflows?query=OsrJobKind%3D%22protect%22
  Status:            node bin/osr.js stack status     node bin/osr.js status
  Stop everything:   node bin/osr.js stack down
TXT
