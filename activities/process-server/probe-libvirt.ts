// Before `osr protect --host --domain` records anything: does the host's libvirt answer with the
// backup API, does the domain exist, and has it a disk whose changes libvirt can track (qcow2)?
import { LibvirtHostError, checkLibvirtHost, trackingProblem } from '../../lib/libvirt/host-check';
import { domainInfo, domainXml as domainXmlOf, NoSuchDomainError } from '../../lib/libvirt/domain';

/** The domain cannot be protected; the message says why and what to do. */
export class LibvirtRefusal extends Error {
  override readonly name = 'LibvirtRefusal';
}
const refused = (message: string) => new LibvirtRefusal(message);

export async function probeLibvirt(
  target: { uri: string; domain: string },
  selected: string[] | undefined,
): Promise<{ greeted: true; disks: string[]; sameSocket: string[]; domainXml: string }> {
  const { uri, domain } = target;
  try {
    await checkLibvirtHost(uri);
    const info = await domainInfo(uri, domain);
    const missing = (selected ?? []).filter((d) => !info.disks.some((x) => x.target === d));
    if (missing.length)
      throw refused(
        `libvirt domain ${domain} has no disk ${missing.join(', ')}; its disks are ${info.disks.map((d) => d.target).join(', ') || 'none'}: fix --disks. Nothing was started.`,
      );
    const disks = info.disks.filter((d) => !selected || selected.includes(d.target));
    const problem = trackingProblem(disks);
    if (problem)
      throw refused(`libvirt domain ${domain} cannot be protected: ${problem}. Nothing was started.`);
    // The definition as libvirt keeps it (not the live one): what a recovery site defines again.
    const domainXml = await domainXmlOf(uri, domain, { inactive: true });
    return { greeted: true, disks: info.disks.map((d) => d.target), sameSocket: [], domainXml };
  } catch (err) {
    if (err instanceof LibvirtHostError || err instanceof NoSuchDomainError)
      throw refused(`${err.message}. Nothing was started.`);
    throw err;
  }
}
