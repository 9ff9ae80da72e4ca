#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against the real Temporal dev server,
# Azurite and qemu-storage-daemon (each test file starts and stops its own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One file at a time: integration files each run a whole stack, and this machine has 2 cores.
exec node --test --test-concurrency=1 dist/test/
