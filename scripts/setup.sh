#!/usr/bin/env bash
# Installs what a fresh machine lacks and builds the project. Safe to run again: every step is
# skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v qemu-storage-daemon >/dev/null || need_pkgs+=(qemu-system-common)
command -v qemu-img >/dev/null || need_pkgs+=(qemu-utils)
command -v nbdinfo >/dev/null || need_pkgs+=(libnbd-bin)
command -v g++ >/dev/null || need_pkgs+=(g++)
command -v make >/dev/null || need_pkgs+=(make)
command -v openssl >/dev/null || need_pkgs+=(openssl) # osr serve's self-signed TLS certificate; the ARM stand-in's in tests
command -v virsh >/dev/null || need_pkgs+=(libvirt-clients) # a process server's way to libvirt hosts
command -v ssh >/dev/null || need_pkgs+=(openssh-client) # remote libvirt hosts: virsh's qemu+ssh and the NBD tunnel
if [ "${OSR_SETUP_TESTS:-}" = 1 ]; then
  # A real VM for the tests (QMP stop/cont, a guest writing through virtio-blk), what builds its
  # initramfs, and the browser the dashboard's test drives (playwright-core).
  command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
  command -v cpio >/dev/null || need_pkgs+=(cpio)
  # mkfs.ext4, dumpe2fs, debugfs and e2fsck: the filesystem the real guest agent freezes, checked.
  command -v debugfs >/dev/null || need_pkgs+=(e2fsprogs)
  command -v chromium >/dev/null || need_pkgs+=(chromium)
  # libvirtd for the libvirt-source tests (each test runs a private session daemon of its own).
  command -v libvirtd >/dev/null || need_pkgs+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
  # A remote libvirt host played on loopback (libvirt-remote.test.ts): its own sshd, and the nc
  # that libvirt's ssh transports run on the far side to reach a session daemon's socket.
  [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
  command -v nc >/dev/null || need_pkgs+=(netcat-openbsd)
  # systemd-analyze: the agent's systemd unit read by systemd's own parser (the test guest has none).
  command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
  # The fault suite's clock-skew trial runs a worker on a shifted clock (LD_PRELOAD libfaketime).
  [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need_pkgs+=(faketime)
fi
if [ "${OSR_SETUP_BENCH:-}" = 1 ]; then command -v rclone >/dev/null || need_pkgs+=(rclone); fi
if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]} (Debian packages)"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  if ! "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${need_pkgs[@]}"; then
    "${sudo_cmd[@]}" apt-get update
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${need_pkgs[@]}"
  fi
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.osr-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

# zstd-napi ships zstd's C sources, not a binary, and its install script would first try to
# download one: its script stays off (package.json allowScripts) and the sources are compiled
# here, offline, with npm's own node-gyp and the system's Node headers.
if [ ! -f node_modules/zstd-napi/build/Release/binding.node ]; then
  echo "setup: compiling zstd-napi (zstd sources shipped in the package)"
  gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  nodedir=()
  [ -f /usr/include/node/node.h ] && nodedir=(--nodedir=/usr)
  log=$(mktemp)
  (cd node_modules/zstd-napi && node "$gyp" rebuild "${nodedir[@]}" >"$log" 2>&1) || {
    tail -30 "$log" >&2
    echo "setup: compiling zstd-napi failed; it needs g++, make, python3 and Node's headers (Debian: nodejs headers in /usr/include/node)" >&2
    exit 1
  }
  rm -f "$log"
fi

bash temporal-dev/build.sh
# The tests' tiny guest: Debian's kernel, busybox and qemu-guest-agent, fetched with apt-get
# download (cached); rebuilt when its build script or init changed (a stamp of both).
if [ "${OSR_SETUP_TESTS:-}" = 1 ]; then bash scripts/build-test-guest.sh; fi
# The agent test guest: the test guest's initramfs plus dropbear, what Node needs and the
# device-mapper modules (cached the same way).
if [ "${OSR_SETUP_TESTS:-}" = 1 ]; then bash scripts/build-agent-guest.sh; fi
# vcsim (govmomi's vCenter simulator) for the vCenter discovery tests only: built from its Go
# module like the Temporal CLI, once. v0.18.0 is the version the Go module proxy serves.
if [ "${OSR_SETUP_TESTS:-}" = 1 ] && [ ! -x "${OSR_STATE_DIR:-.osr}/bin/vcsim" ]; then
  echo "setup: building vcsim (govmomi v0.18.0) into ${OSR_STATE_DIR:-.osr}/bin"
  mkdir -p "${OSR_STATE_DIR:-.osr}/bin"
  GOBIN="$(cd "${OSR_STATE_DIR:-.osr}/bin" && pwd)" GOFLAGS=-buildvcs=false go install github.com/vmware/govmomi/vcsim@v0.18.0
fi
# toxiproxy for the WAN benchmark's added-latency profile (`npm run bench -- --wan`), built from its
# Go module like the Temporal CLI (the command is cmd/server; installed as toxiproxy-server).
if [ "${OSR_SETUP_BENCH:-}" = 1 ] && [ ! -x "${OSR_STATE_DIR:-.osr}/bin/toxiproxy-server" ]; then
  echo "setup: building toxiproxy v2.5.0 into ${OSR_STATE_DIR:-.osr}/bin"
  mkdir -p "${OSR_STATE_DIR:-.osr}/bin"
  gobin=$(mktemp -d)
  GOBIN="$gobin" GOFLAGS=-buildvcs=false go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
  mv "$gobin/server" "${OSR_STATE_DIR:-.osr}/bin/toxiproxy-server"
  rmdir "$gobin"
fi
npm run --silent build
echo "setup: done"
