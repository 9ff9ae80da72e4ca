#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against the real Temporal dev server,
# Azurite and qemu-storage-daemon (each test file starts and stops its own).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests need more than running OSR does: a real VM (qemu-system + a tiny guest) and Chromium.
OSR_SETUP_TESTS=1 bash scripts/setup.sh
# One file at a time: integration files each run a whole stack, and this machine has 2 cores.
# Test files only: given a folder, Node 20 would also run the helpers as if they were tests.
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# A file that hangs (a server left running keeps its process alive) fails after 20 minutes
# instead of holding the whole run (the slowest takes a few minutes). The usual TAP goes to
# stdout; each file's time, slowest first, to stderr at the end (where CI's minutes go).
exec node --test --test-concurrency=1 --test-timeout=1200000 \
  --test-reporter=tap --test-reporter-destination=stdout \
  --test-reporter=./scripts/file-times.mjs --test-reporter-destination=stderr \
  "${files[@]}"
