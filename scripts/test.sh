#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against the real Temporal dev server,
# Azurite and qemu-storage-daemon (each test file starts and stops its own).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests need more than running OSR does: a real VM (qemu-system + a tiny guest) and Chromium.
OSR_SETUP_TESTS=1 bash scripts/setup.sh
# Two lanes, each one file at a time (integration files each run a whole stack; this machine has
# 2 cores). The guest lane: files that boot a kernel under TCG (they use a guest helper: the agent
# guest, the test VM or libvirt) and those whose windows follow the clock (the fault suite,
# bandwidth-limit, no-starvation), at normal priority. The other lane runs the rest beside it at
# a lower priority, in the CPU the guests leave idle, so it slows the guest lane little.
# Test files only: given a folder, Node 20 would also run the helpers as if they were tests.
guests=()
rest=()
while IFS= read -r f; do
  if grep -qE 'helpers/(agent-guest|test-vm|libvirt-vm|libvirt-daemon)"' "$f" ||
    [[ $f =~ /chaos/|/integration/(bandwidth-limit|no-starvation)\.test\.js$ ]]; then
    guests+=("$f")
  else
    rest+=("$f")
  fi
done < <(find dist/test -name '*.test.js' | sort)
# A file that hangs (a server left running keeps its process alive) fails after 20 minutes
# instead of holding the whole run (the slowest takes a few minutes). The usual TAP goes to
# stdout (the guest lane's as it runs, the other lane's when both are done); each file's time,
# slowest first, to stderr at the end of its lane (where CI's minutes go).
run=(node --test --test-concurrency=1 --test-timeout=1200000
  --test-reporter=tap --test-reporter-destination=stdout
  --test-reporter=./scripts/file-times.mjs --test-reporter-destination=stderr)
out="$(mktemp -d)"
nice -n 10 "${run[@]}" "${rest[@]}" >"$out/rest.tap" 2>"$out/rest.times" &
rest_pid=$!
trap 'kill "$rest_pid" 2>/dev/null || true; rm -rf "$out"' EXIT
guest_rc=0
"${run[@]}" "${guests[@]}" || guest_rc=$?
rest_rc=0
wait "$rest_pid" || rest_rc=$?
echo "# the other lane (${#rest[@]} files, beside the guest lane's ${#guests[@]}):"
cat "$out/rest.tap"
cat "$out/rest.times" >&2
echo "test: guest lane exit ${guest_rc}, other lane exit ${rest_rc}" >&2
[ "$guest_rc" -eq 0 ] && [ "$rest_rc" -eq 0 ]
