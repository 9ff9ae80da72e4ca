// Where an agent machine's change log lives now (agent/tracking/era-log.ts): the file behind the
// loop device its era target keeps its metadata on, read from the kernel, not from the agent.

/** The era table's metadata device (major:minor), then the loop's backing file. */
export async function eraLogFile(sh: (command: string) => Promise<string>, disk: string): Promise<string> {
  const table = (await sh(`/usr/sbin/dmsetup table osr-${disk}`)).trim().split(/\s+/);
  if (table[2] !== 'era') throw new Error(`osr-${disk} is not an era device: ${table.join(' ')}`);
  return (await sh(`cat /sys/dev/block/${table[3]}/loop/backing_file`)).trim();
}
