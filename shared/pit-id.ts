// The id of a cycle's point in time at the source. The process server freezes under it and the
// workflow releases it when a failed freeze may have left it behind: one definition for both.
export function pitIdOf(machine: string, cycle: number): string {
  return `${machine}-c${cycle}`;
}
