// What the Azure readiness check found inside a machine at protect time (lib/qemu/azure-readiness.ts).
// Pure types: recorded with the machine in the vault and shown in its status.

export interface ReadinessProblem {
  /** What would break on Azure. */
  what: string;
  /** What to change in the machine. */
  fix: string;
}

export type AzureReadiness =
  | {
      checked: true;
      checkedAt: string;
      ready: boolean;
      /** The running kernel's release, whose drivers were looked at. */
      kernel?: string;
      problems: ReadinessProblem[];
      /** What could not be looked at (no initramfs lister, …): not a problem, not proven either. */
      notes?: string[];
    }
  | { checked: false; checkedAt: string; reason: string };

/** The "azure readiness" lines of `osr status`: the verdict, then each problem with its fix. */
export function readinessLines(r: AzureReadiness): string[] {
  if (!r.checked) return [`azure readiness: not checked (${r.reason})`];
  const head = `azure readiness: ${r.ready ? 'ready' : `${r.problems.length} problem(s)`} (kernel ${r.kernel ?? '?'}, checked ${r.checkedAt})`;
  return [
    head,
    ...r.problems.flatMap((p) => [`  - ${p.what}`, `    fix: ${p.fix}`]),
    ...(r.notes ?? []).map((n) => `  note: ${n}`),
  ];
}
