#!/usr/bin/env bash
# Builds the official Temporal CLI (dev server with its Web UI) from its Go module into the
# state folder, skipping the build when that version is already there. v1.5.1 is the newest
# release whose go.mod has no replace directive: later releases refuse `go install`.
set -euo pipefail
VERSION=v1.5.1
root=$(cd "$(dirname "$0")/.." && pwd)
state=${OSR_STATE_DIR:-$root/.osr}
bin="$state/bin"
if [ -x "$bin/temporal" ] && go version -m "$bin/temporal" 2>/dev/null | grep -qE "mod\s+github.com/temporalio/cli\s+$VERSION\b"; then
  echo "temporal-dev: Temporal CLI $VERSION already built at $bin/temporal"
  exit 0
fi
command -v go >/dev/null || { echo "temporal-dev: Go is needed to build the Temporal CLI; install Go 1.23+ (https://go.dev/dl) and retry" >&2; exit 1; }
mkdir -p "$bin"
echo "temporal-dev: building Temporal CLI $VERSION into $bin (first time only, a few minutes)"
GOBIN="$bin" GOFLAGS=-buildvcs=false go install "github.com/temporalio/cli/cmd/temporal@$VERSION"
"$bin/temporal" --version
