// The Azure readiness rules over what a guest showed of itself (pure: no I/O, unit-tested over
// fixture text). The guest runs READINESS_SCRIPT (through its agent's guest-exec); its output is a
// list of sections, each "@@<kind> <path>" followed by that file's lines or the matches found.
import type { AzureReadiness, ReadinessProblem } from '../../shared/azure-readiness';

const DRIVERS = ['hv_vmbus', 'hv_storvsc', 'hv_netvsc'] as const;
/** Needed before the root filesystem is mounted: the bus and the disk driver. */
const BOOT_DRIVERS = ['hv_vmbus', 'hv_storvsc'] as const;

/**
 * Prints, for the running kernel: its release, the Hyper-V driver lines of modules.builtin and
 * modules.dep, the driver files under /lib/modules, the kernel command line, the network and mount
 * configuration files, and the Hyper-V drivers inside the initramfs (lsinitramfs, or lsinitrd on
 * dracut systems). POSIX sh: works on busybox too.
 */
export const READINESS_SCRIPT = `r=$(uname -r); echo "@@kernel $r"
echo "@@file /proc/cmdline"; cat /proc/cmdline
m=/lib/modules/$r
for f in $m/modules.builtin $m/modules.dep; do [ -f "$f" ] && { echo "@@grep $f"; grep -E 'hv_(vmbus|storvsc|netvsc)' "$f"; }; done
[ -d "$m" ] && { echo "@@find $m"; find "$m" -name 'hv_*.ko*'; }
for f in /etc/fstab /etc/udev/rules.d/*persistent-net*.rules /etc/sysconfig/network-scripts/ifcfg-* /etc/sysconfig/network/ifcfg-* /etc/systemd/network/*.network /etc/systemd/network/*.link /etc/netplan/*.yaml /etc/netplan/*.yml; do [ -f "$f" ] && { echo "@@file $f"; cat "$f"; }; done
for i in /boot/initrd.img-$r /boot/initramfs-$r.img; do [ -f "$i" ] || continue
  if command -v lsinitramfs >/dev/null; then echo "@@initramfs $i"; lsinitramfs "$i" | grep -E 'hv_(vmbus|storvsc|netvsc)'
  elif command -v lsinitrd >/dev/null; then echo "@@initramfs $i"; lsinitrd "$i" | grep -E 'hv_(vmbus|storvsc|netvsc)'
  else echo "@@unlisted $i"; fi; done
true
`;

export interface GuestReport {
  kernel?: string;
  sections: Array<{ kind: string; path: string; lines: string[] }>;
}

export function parseGuestReport(output: string): GuestReport {
  const report: GuestReport = { sections: [] };
  for (const line of output.split('\n')) {
    const head = /^@@(\w+) ?(.*)$/.exec(line);
    if (head) {
      const [, kind = '', rest = ''] = head;
      if (kind === 'kernel') report.kernel = rest.trim();
      else report.sections.push({ kind, path: rest.trim(), lines: [] });
    } else if (line.trim()) report.sections.at(-1)?.lines.push(line);
  }
  return report;
}

/** A line naming driver `d`'s module file (hv_vmbus.ko, .ko.xz, .ko.zst …), as a path or a dep entry. */
function namesDriver(line: string, d: string): boolean {
  return new RegExp(`(^|/)${d}\\.ko(\\.\\w+)?(:|\\s|$)`).test(line);
}

function driverProblems(report: GuestReport, kernel: string, notes: string[]): ReadinessProblem[] {
  const lines = (kind: string, ending?: string) =>
    report.sections
      .filter((s) => s.kind === kind && (!ending || s.path.endsWith(ending)))
      .flatMap((s) => s.lines);
  const builtin = new Set(
    DRIVERS.filter((d) => lines('grep', 'modules.builtin').some((l) => namesDriver(l, d))),
  );
  const modules = new Set(
    DRIVERS.filter((d) =>
      [...lines('grep', 'modules.dep'), ...lines('find')].some((l) => namesDriver(l.split(':')[0] ?? '', d)),
    ),
  );
  const problems: ReadinessProblem[] = [];
  const missing = DRIVERS.filter((d) => !builtin.has(d) && !modules.has(d));
  if (missing.length)
    problems.push({
      what: `kernel ${kernel} has no ${missing.join(', ')} (neither built in per modules.builtin nor a module under /lib/modules/${kernel}): Azure's Hyper-V disks and network would be invisible to it`,
      fix: `install the Hyper-V drivers for this kernel (Debian/Ubuntu: linux-image-cloud-amd64 or linux-azure; RHEL and derivatives: kernel-core has them) and boot that kernel, then protect again`,
    });
  const images = report.sections.filter((s) => s.kind === 'initramfs');
  for (const image of images) {
    const absent = BOOT_DRIVERS.filter(
      (d) => !builtin.has(d) && modules.has(d) && !image.lines.some((l) => namesDriver(l, d)),
    );
    if (absent.length)
      problems.push({
        what: `the boot image ${image.path} lacks ${absent.join(', ')}: on Azure the root disk would not be found at boot`,
        fix: `add them to the initramfs: Debian/Ubuntu: append ${absent.join(' ')} to /etc/initramfs-tools/modules and run \`update-initramfs -u\`; dracut (RHEL, SUSE): put add_drivers+=" ${absent.join(' ')} " in /etc/dracut.conf.d/hyperv.conf and run \`dracut -f\``,
      });
  }
  for (const s of report.sections.filter((x) => x.kind === 'unlisted'))
    notes.push(`${s.path} was not looked into (neither lsinitramfs nor lsinitrd in the guest)`);
  if (!images.length && !report.sections.some((s) => s.kind === 'unlisted'))
    notes.push(`no initramfs for kernel ${kernel} in /boot: the drivers a boot needs must be built in`);
  return problems;
}

const DEVICE_NAME = /^\/dev\/(vd|sd|xvd|hd)[a-z]+\d*$/;

function configProblems(report: GuestReport): ReadinessProblem[] {
  const problems: ReadinessProblem[] = [];
  for (const { kind, path, lines } of report.sections) {
    if (kind !== 'file') continue;
    const active = lines.map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    if (path === '/proc/cmdline') {
      const root = /(?:^|\s)root=(\S+)/.exec(active.join(' '))?.[1];
      if (root && DEVICE_NAME.test(root))
        problems.push({
          what: `the kernel boots with root=${root}: on Azure the OS disk is /dev/sda and its name is not stable`,
          fix: `boot with root=UUID=<uuid> (blkid ${root}): set it in GRUB (GRUB_DISABLE_LINUX_UUID=false, update-grub or grub2-mkconfig)`,
        });
    } else if (path === '/etc/fstab') {
      const fixed = active.map((l) => l.split(/\s+/)[0] ?? '').filter((dev) => DEVICE_NAME.test(dev));
      if (fixed.length)
        problems.push({
          what: `/etc/fstab mounts by device name (${fixed.join(', ')}): Azure names disks /dev/sdX in its own order, never /dev/vdX`,
          fix: `mount by UUID= or LABEL= in /etc/fstab (blkid shows them)`,
        });
    } else if (/persistent-net/.test(path) && active.some((l) => /ATTR\{address\}/.test(l))) {
      problems.push({
        what: `${path} binds interface names to MAC addresses: Azure gives the NIC a new MAC, so it would get another name and no configuration`,
        fix: `delete ${path} (it is written again for the NICs the machine has)`,
      });
    } else if (/ifcfg-/.test(path) && active.some((l) => /^HWADDR=/.test(l))) {
      problems.push({
        what: `${path} binds the interface to a MAC address (HWADDR=)`,
        fix: `remove the HWADDR= line from ${path} (DEVICE= names the interface)`,
      });
    } else if (/\.(network|link)$/.test(path) && active.some((l) => /^MACAddress=/.test(l))) {
      problems.push({
        what: `${path} matches the interface by MACAddress=`,
        fix: `match by Name= or Driver= instead of MACAddress= in ${path}`,
      });
    } else if (/netplan/.test(path) && active.some((l) => /^macaddress:/.test(l))) {
      problems.push({
        what: `${path} matches an interface by macaddress:`,
        fix: `match by name: or driver: hv_netvsc instead of macaddress: in ${path}, then \`netplan apply\``,
      });
    }
  }
  return problems;
}

/** The verdict over a guest's report. */
export function readinessOf(output: string, checkedAt: string): AzureReadiness {
  const report = parseGuestReport(output);
  if (!report.kernel)
    return { checked: false, checkedAt, reason: 'the guest printed no kernel release (uname -r failed)' };
  const notes: string[] = [];
  const problems = [...driverProblems(report, report.kernel, notes), ...configProblems(report)];
  return {
    checked: true,
    checkedAt,
    ready: problems.length === 0,
    kernel: report.kernel,
    problems,
    ...(notes.length ? { notes } : {}),
  };
}
