#!/usr/bin/env bash
# Builds the agent test guest (test/helpers/agent-guest.ts boots it): a machine OSR reaches only
# over the network, the way the Mobility agent meets one.
#   .osr/agent-guest/initrd.img    the test guest's initramfs (scripts/build-test-guest.sh) with a
#                                  second gzip'ed newc cpio appended (the kernel unpacks both, the
#                                  later one over the earlier): test/agent-guest/init as /init,
#                                  dropbear (SSH server, root by key), sftp-server, fsfreeze,
#                                  blockdev from util-linux, losetup from mount, what Node needs (libc6, libstdc++6,
#                                  libgcc-s1), dmsetup and thin-provisioning-tools (era_invalidate,
#                                  era_dump: the agent's change tracking) with their libraries, and
#                                  the kernel modules virtio_net, loop and device-mapper (dm-mod,
#                                  dm-era, dm-snapshot and their dependencies)
#   .osr/agent-guest/host_key.pub  the public half of the guest's SSH host key, made at build
# The kernel is the test guest's (.osr/test-guest/vmlinux). Packages are fetched with `apt-get
# download` into .osr/test-guest/debs/ (shared with the test guest, never installed) and unpacked
# with `dpkg-deb -x`. Nothing is done when the stamp (this script, the init and the test guest's
# stamp) is unchanged; `--force` rebuilds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$ROOT/.osr/test-guest"
OUT="$ROOT/.osr/agent-guest"
DEBS="$BASE/debs"
INIT="$ROOT/test/agent-guest/init"
STAMP="$OUT/stamp"
# Loaded in this order (each after what it depends on; checked below against the modules' own lists).
MODULES=(failover net_failover virtio_net loop dm-mod dm-bufio libcrc32c dm-persistent-data dm-era dm-snapshot)
PACKAGES=(dropbear-bin libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g openssh-sftp-server util-linux
  libc6 libstdc++6 libgcc-s1 dmsetup libdevmapper1.02.1 libselinux1 libudev1 libpcre2-8-0
  thin-provisioning-tools libaio1 libexpat1 mount libmount1 libblkid1 libsmartcols1)

log() { echo "build-agent-guest: $*" >&2; }

bash "$ROOT/scripts/build-test-guest.sh"
stamp_now() { cat "${BASH_SOURCE[0]}" "$INIT" "$BASE/stamp" | sha256sum | cut -d' ' -f1; }
if [[ "${1:-}" != "--force" && -s "$OUT/initrd.img" && -s "$OUT/host_key.pub" && -f "$STAMP" ]] &&
  [[ "$(cat "$STAMP")" == "$(stamp_now)" ]]; then
  log "up to date ($OUT)"
  exit 0
fi

download() {
  local pkg="$1"
  if ! ls "$DEBS/${pkg}"_*.deb >/dev/null 2>&1; then
    log "downloading $pkg"
    (cd "$DEBS" && apt-get download -q "$pkg" >/dev/null 2>&1) || {
      apt-get update -q >/dev/null
      (cd "$DEBS" && apt-get download -q "$pkg" >/dev/null)
    }
  fi
  ls "$DEBS/${pkg}"_*.deb | head -n1
}

mkdir -p "$OUT"
TMP=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
P="$TMP/pkgs"
for pkg in "${PACKAGES[@]}"; do dpkg-deb -x "$(download "$pkg")" "$P"; done

# ---- kernel modules, from the test guest's kernel package ----
kernel_deb=$(ls "$DEBS"/linux-image-[0-9]*.deb | head -n1)
dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$TMP" --wildcards \
  './lib/modules/*/kernel/drivers/md/*' './lib/modules/*/kernel/drivers/block/*' './lib/modules/*/kernel/drivers/net/*' './lib/modules/*/kernel/net/core/*' './lib/modules/*/kernel/lib/*'
R="$TMP/root"
mkdir -p "$R/lib/modules" "$R/etc/dropbear" "$R/usr/bin" "$R/usr/sbin" "$R/usr/lib/openssh" "$R/lib/x86_64-linux-gnu"
# Already there: the test guest's modules and the kernel's built-ins.
base_mods=$( (zcat "$BASE/initrd.img" | cpio -i --quiet --to-stdout lib/modules/load-order) 2>/dev/null || true)
loaded=" $(echo $base_mods) "
dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$TMP" --wildcards './lib/modules/*/modules.builtin'
loaded+="$(sed 's#.*/##; s#\.ko.*##' "$TMP"/lib/modules/*/modules.builtin | tr '\n' ' ') "
: >"$R/lib/modules/agent-load-order"
for m in "${MODULES[@]}"; do
  f=$(find "$TMP/lib/modules" -name "$m.ko" | head -n1)
  [[ -n "$f" ]] || {
    log "no module $m in $(basename "$kernel_deb")"
    exit 1
  }
  deps=$( (tr '\0' '\n' <"$f" | grep -a -m1 '^depends=' || true) | sed 's/^depends=//; s/,/ /g')
  for d in $deps; do
    [[ "$loaded" == *" ${d//_/-} "* || "$loaded" == *" ${d//-/_} "* ]] || {
      log "module $m needs $d first: fix MODULES"
      exit 1
    }
  done
  cp "$f" "$R/lib/modules/$m.ko"
  echo "$m" >>"$R/lib/modules/agent-load-order"
  loaded+="$m "
done

# ---- userland: the executables, and every shared library of the packages ----
cp "$P/usr/sbin/dropbear" "$R/usr/sbin/dropbear"
cp "$P/usr/lib/openssh/sftp-server" "$R/usr/lib/openssh/sftp-server"
ln -s openssh/sftp-server "$R/usr/lib/sftp-server"
cp "$P/sbin/dmsetup" "$R/usr/sbin/dmsetup"
cp "$P/usr/sbin/pdata_tools" "$R/usr/sbin/pdata_tools"
for t in era_invalidate era_dump era_check; do ln -s pdata_tools "$R/usr/sbin/$t"; done
for b in fsfreeze blockdev losetup; do cp "$(find "$P" -path "*bin/$b" -type f | head -n1)" "$R/usr/sbin/$b"; done
for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
  [[ -d "$P/$d" ]] && find "$P/$d" -maxdepth 1 -name '*.so*' -exec cp -a {} "$R/lib/x86_64-linux-gnu/" \;
done

# ---- the SSH host key, made here with the package's own dropbearkey ----
libs="$P/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu"
LD_LIBRARY_PATH="$libs" "$P/usr/bin/dropbearkey" -t ed25519 -f "$R/etc/dropbear/dropbear_ed25519_host_key" >/dev/null 2>&1
LD_LIBRARY_PATH="$libs" "$P/usr/bin/dropbearkey" -y -f "$R/etc/dropbear/dropbear_ed25519_host_key" |
  grep '^ssh-ed25519 ' | cut -d' ' -f1,2 >"$TMP/host_key.pub"
chmod 0600 "$R/etc/dropbear/dropbear_ed25519_host_key"

install -m 0755 "$INIT" "$R/init"
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 >"$TMP/overlay.gz"
cat "$BASE/initrd.img" "$TMP/overlay.gz" >"$TMP/initrd.img"
mv -f "$TMP/host_key.pub" "$OUT/host_key.pub"
mv -f "$TMP/initrd.img" "$OUT/initrd.img"
stamp_now >"$STAMP"
log "built $OUT/initrd.img ($(du -k "$OUT/initrd.img" | cut -f1) KiB; modules: ${MODULES[*]})"
