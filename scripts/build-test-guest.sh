#!/usr/bin/env bash
# Builds the tiny Linux guest the integration tests boot (test/helpers/test-vm.ts):
#   .osr/test-guest/vmlinuz     Debian's amd64 kernel (the one linux-image-amd64 depends on)
#   .osr/test-guest/vmlinux     the same kernel uncompressed (ELF with a PVH note): QEMU boots it
#                               directly, which saves seconds of decompression without KVM
#   .osr/test-guest/initrd.img  gzip'ed newc cpio: busybox-static, test/guest/init as /init,
#                               the kernel modules virtio-blk needs (virtio_pci, virtio_blk…),
#                               and the real QEMU guest agent (qemu-ga from qemu-guest-agent, with
#                               the Debian libraries it links, unpacked beside it) plus the modules
#                               it needs: virtio_console (its port) and ext4 with crc32c (a filesystem
#                               to freeze)
# The .debs are fetched with `apt-get download` into .osr/test-guest/debs/ (never installed) and
# unpacked with `dpkg-deb -x`. Quick and idempotent: nothing is done when both files exist and
# the stamp (a hash of this script and of test/guest/init) is unchanged. `--force` rebuilds.
# Needs: apt-get, dpkg-deb, gzip, and cpio (installed from Debian's packages when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.osr/test-guest"
DEBS="$OUT/debs"
INIT="$ROOT/test/guest/init"
STAMP="$OUT/stamp"
# Modules the guest needs and loads (their dependencies are added in order).
WANTED_MODULES=(virtio_pci virtio_blk virtio_console crc32c_generic ext4)
# qemu-ga and the shared libraries it loads (Depends of qemu-guest-agent, and theirs).
AGENT_PACKAGES=(qemu-guest-agent libc6 libglib2.0-0 libnuma1 libudev1 liburing2 libffi8 libmount1 libblkid1
  libselinux1 libpcre2-8-0 zlib1g)

log() { echo "build-test-guest: $*" >&2; }

stamp_now() {
  cat "${BASH_SOURCE[0]}" "$INIT" | sha256sum | cut -d' ' -f1
}

if [[ "${1:-}" != "--force" && -s "$OUT/vmlinuz" && -s "$OUT/initrd.img" && -f "$STAMP" ]] &&
  [[ "$(cat "$STAMP")" == "$(stamp_now)" ]]; then
  log "up to date ($OUT)"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if ! command -v cpio >/dev/null; then
  log "installing cpio"
  $SUDO apt-get install -y -q cpio >/dev/null || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q cpio >/dev/null
  }
fi

mkdir -p "$DEBS"
updated=0
# Downloads package $1 into $DEBS unless a .deb of it is already there; sets DEB to its path.
download() {
  local pkg="$1" deb
  deb=$(ls "$DEBS/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
  if [[ -z "$deb" ]]; then
    log "downloading $pkg"
    # apt-get download warns when the _apt user cannot write here; the download works as root.
    if ! (cd "$DEBS" && apt-get download -q "$pkg" >/dev/null 2>"$DEBS/apt.err"); then
      if [[ $updated -eq 1 ]]; then
        cat "$DEBS/apt.err" >&2
        return 1
      fi
      log "apt-get download $pkg failed ($(tail -n1 "$DEBS/apt.err")): running apt-get update once"
      $SUDO apt-get update -q >/dev/null
      updated=1
      (cd "$DEBS" && apt-get download -q "$pkg" >/dev/null 2>"$DEBS/apt.err") || {
        cat "$DEBS/apt.err" >&2
        return 1
      }
    fi
    rm -f "$DEBS/apt.err"
    deb=$(ls "$DEBS/${pkg}"_*.deb | head -n1)
  fi
  DEB="$deb"
}

# The concrete kernel package the metapackage points at, e.g. linux-image-6.1.0-56-amd64.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$kernel_pkg" ]]; then
  $SUDO apt-get update -q >/dev/null
  updated=1
  kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n "$kernel_pkg" ]] || {
  log "cannot tell which kernel package linux-image-amd64 depends on"
  exit 1
}
download "$kernel_pkg"
kernel_deb="$DEB"
download busybox-static
busybox_deb="$DEB"
agent_debs=()
for pkg in "${AGENT_PACKAGES[@]}"; do
  download "$pkg"
  agent_debs+=("$DEB")
done

TMP=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
log "unpacking $(basename "$kernel_deb") and $(basename "$busybox_deb")"
dpkg-deb -x "$kernel_deb" "$TMP/kernel"
dpkg-deb -x "$busybox_deb" "$TMP/busybox"

moddir=$(ls -d "$TMP"/kernel/lib/modules/*/ | head -n1)
moddir="${moddir%/}"
vmlinuz=$(ls "$TMP"/kernel/boot/vmlinuz-* | head -n1)

# ---- kernel modules: resolve dependencies, skip built-ins, decompress (.ko.xz / .ko.zst) ----
declare -A MODFILE=() DONE=()
ORDER=()
while IFS= read -r f; do
  name=$(basename "$f")
  name="${name%%.ko*}"
  MODFILE[${name//-/_}]="$f"
done < <(find "$moddir/kernel" -name '*.ko*')

is_builtin() {
  local n="${1//-/_}"
  [[ -f "$moddir/modules.builtin" ]] && sed 's#.*/##; s#\.ko.*##; s#-#_#g' "$moddir/modules.builtin" | grep -qx "$n"
}

# A module as plain .ko in $TMP/ko/ (decompressed on the host: busybox insmod reads plain files).
plain_ko() {
  local n="$1" src="${MODFILE[$1]}" dst="$TMP/ko/$1.ko"
  mkdir -p "$TMP/ko"
  if [[ ! -f "$dst" ]]; then
    case "$src" in
    *.ko.xz) xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) cp "$src" "$dst" ;;
    esac
  fi
  echo "$dst"
}

deps_of() {
  local n="$1" rel line
  if [[ -f "$moddir/modules.dep" ]]; then
    rel="${MODFILE[$n]#"$moddir"/}"
    line=$(grep -m1 "^${rel}:" "$moddir/modules.dep" || true)
    for d in ${line#*:}; do
      d=$(basename "$d")
      d="${d%%.ko*}"
      echo "${d//-/_}"
    done
  else
    # No modules.dep in the package (depmod runs at install time): read the module's .modinfo.
    line=$(tr '\0' '\n' <"$(plain_ko "$n")" | grep -a -m1 '^depends=' || true)
    line="${line#depends=}"
    tr ',' '\n' <<<"$line" | sed 's/-/_/g' | grep . || true
  fi
}

add_module() {
  local n="${1//-/_}"
  [[ -n "${DONE[$n]:-}" ]] && return 0
  DONE[$n]=1
  if [[ -z "${MODFILE[$n]:-}" ]]; then
    if is_builtin "$n"; then return 0; fi
    log "module $n is neither a module nor built into $(basename "$moddir")"
    exit 1
  fi
  local d
  for d in $(deps_of "$n"); do add_module "$d"; done
  ORDER+=("$n")
}
for m in "${WANTED_MODULES[@]}"; do add_module "$m"; done

# ---- the initramfs tree ----
R="$TMP/root"
mkdir -p "$R"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$TMP/busybox/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
install -m 0755 "$INIT" "$R/init"
: >"$R/lib/modules/load-order"
for n in "${ORDER[@]}"; do
  cp "$(plain_ko "$n")" "$R/lib/modules/$n.ko"
  echo "$n" >>"$R/lib/modules/load-order"
done
# The guest agent: its packages unpacked whole into a scratch root, then only the executable and
# the shared libraries kept (/usr/bin/qemu-ga, lib*.so* with their symlinks, the loader).
A="$TMP/agent"
for deb in "${agent_debs[@]}"; do dpkg-deb -x "$deb" "$A"; done
mkdir -p "$R/usr/bin" "$R/lib64" "$R/lib/x86_64-linux-gnu"
cp "$A/usr/sbin/qemu-ga" "$R/usr/bin/qemu-ga" 2>/dev/null || cp "$A/usr/bin/qemu-ga" "$R/usr/bin/qemu-ga"
for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
  [[ -d "$A/$d" ]] || continue
  find "$A/$d" -maxdepth 1 -name '*.so*' -exec cp -a {} "$R/lib/x86_64-linux-gnu/" \;
done
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"

# The kernel opens /dev/console for /init before devtmpfs is mounted.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || log "cannot mknod /dev/console (not root?): /init mounts devtmpfs first"

(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 >"$TMP/initrd.img"
cp "$vmlinuz" "$TMP/vmlinuz"
# The bzImage's payload is an xz stream: unpack it to the ELF vmlinux (optional: the helper boots
# vmlinuz when there is no vmlinux).
rm -f "$OUT/vmlinux"
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1 || true)
if [[ -n "$off" ]]; then
  # xz complains about the bytes after its stream; the ELF magic tells whether it worked.
  tail -c +$((off + 1)) "$vmlinuz" | xz -dcq >"$TMP/vmlinux" 2>/dev/null || true
  if [[ "$(head -c 4 "$TMP/vmlinux" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
    mv -f "$TMP/vmlinux" "$OUT/vmlinux"
  else
    log "could not unpack vmlinux from $(basename "$vmlinuz"): booting the compressed kernel"
  fi
fi
mv -f "$TMP/vmlinuz" "$OUT/vmlinuz"
mv -f "$TMP/initrd.img" "$OUT/initrd.img"
stamp_now >"$STAMP"
log "built $OUT/vmlinuz ($(basename "$vmlinuz")) and initrd.img ($(du -k "$OUT/initrd.img" | cut -f1) KiB; modules: ${ORDER[*]})"
