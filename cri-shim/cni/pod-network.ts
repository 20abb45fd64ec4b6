import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { loadDefaultNetwork } from '../../lib/cni/conf-dir.js';
import { CniRunner, type CniRunnerOptions, type NetworkList, type RuntimeConf } from '../../lib/cni/runner.js';
import type { CniResult } from '../../lib/cni/types.js';
import { RtnlSession } from '../../lib/netlink/rtnl.js';
import { Protocol, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import type { CriConfig } from '../config.js';
import { podBandwidth } from './bandwidth.js';

// The pod network through CNI, as kubelet's runtimes do it: the first network configuration in
// the conf dir, interface eth0, the pod's identity in CNI_ARGS, port mappings, DNS and the
// bandwidth annotations as capability args, and the result cached on disk so DEL works after a restart.

export const podInterface = 'eth0';

export interface PodAttachment {
  sandboxId: string;
  netnsPath: string;
  config: PodSandboxConfig;
  cgroupParent?: string;
}

export class PodNetwork {
  private readonly runner: CniRunner;

  constructor(
    private readonly config: CriConfig,
    private readonly log: Logger,
    observe?: CniRunnerOptions['observe'],
  ) {
    // berth's own plugins skip the Node start of their executable: called in this process when
    // berthd hosts berth-cnid beside the CRI, else through berth-cnid's socket when one of their
    // build answers there (lib/cni/invoke.ts); foreign plugins are executed as always.
    this.runner = new CniRunner(config.cniBinDir, {
      cacheDir: config.cniCacheDir,
      ...(observe ? { observe } : {}),
      invoker: { shortcuts: true, onCall: (call) => log.debug(call, 'cni plugin call') },
    });
  }

  /** The network list kubelet's pods get now (the conf dir is re-read: it may change). */
  async network(): Promise<NetworkList> {
    const { list, file, skipped } = await loadDefaultNetwork(this.config.cniConfDir);
    for (const s of skipped) this.log.warn({ file: s.file, reason: s.reason }, 'skipping invalid CNI network configuration');
    this.log.debug({ file, network: list.name }, 'using CNI network');
    return list;
  }

  /** `forAdd`: DEL needs no limits, and a pod whose annotation was refused must still be deletable. */
  private runtimeConf(a: PodAttachment, forAdd: boolean): RuntimeConf {
    const meta = a.config.metadata;
    const portMappings = (a.config.portMappings ?? [])
      .filter((p) => p.hostPort > 0)
      .map((p) => ({
        hostPort: p.hostPort,
        containerPort: p.containerPort,
        protocol: p.protocol === Protocol.UDP ? 'udp' : p.protocol === Protocol.SCTP ? 'sctp' : 'tcp',
        ...(p.hostIp ? { hostIP: p.hostIp } : {}),
      }));
    const dns = a.config.dnsConfig;
    const bandwidth = forAdd ? podBandwidth(a.config.annotations) : undefined;
    return {
      containerId: a.sandboxId,
      netns: a.netnsPath,
      ifname: podInterface,
      args: [
        ['IgnoreUnknown', '1'],
        ['K8S_POD_NAMESPACE', meta?.namespace ?? ''],
        ['K8S_POD_NAME', meta?.name ?? ''],
        ['K8S_POD_INFRA_CONTAINER_ID', a.sandboxId],
        ['K8S_POD_UID', meta?.uid ?? ''],
      ],
      capabilityArgs: {
        ...(portMappings.length ? { portMappings } : {}),
        ...(dns ? { dns: { servers: dns.servers, searches: dns.searches, options: dns.options } } : {}),
        ...(a.cgroupParent ? { cgroupPath: a.cgroupParent } : {}),
        ...(bandwidth ? { bandwidth } : {}),
      },
    };
  }

  /** CNI ADD; returns the pod's IPs, IPv4 first. The pod's `lo` is brought up first, as kubelet's runtimes do. */
  async setUp(a: PodAttachment): Promise<string[]> {
    // Never beside a GC: it would take this attachment, made after its list of valid ones, for a leak.
    while (this.collecting) await this.collecting;
    this.adding++;
    try {
      await loopbackUp(a.netnsPath);
      const list = await this.network();
      const result = await this.runner.add(list, this.runtimeConf(a, true));
      return podIps(result);
    } finally {
      this.adding--;
    }
  }

  private adding = 0;
  private collecting?: Promise<boolean>;

  /**
   * CNI GC (spec 1.1): attachments of the current network that are not among `validSandboxes()`
   * (asked once no ADD is under way, and none starts until the GC is over) are deleted, and each
   * plugin gets GC with cni.dev/valid-attachments, so what a crash or a reboot left (IP leases,
   * veths, port mappings) is released. False when skipped because ADDs were under way.
   */
  gc(validSandboxes: () => Iterable<string>): Promise<boolean> {
    if (this.adding > 0 || this.collecting) return Promise.resolve(false);
    this.collecting = (async () => {
      const list = await this.network();
      const valid = [...validSandboxes()].map((id) => ({ containerID: id, ifname: podInterface }));
      await this.runner.gc(list, valid);
      return true;
    })().finally(() => (this.collecting = undefined));
    return this.collecting;
  }

  /**
   * CNI DEL (idempotent: plugins succeed for unknown attachments and a gone netns). The list
   * cached at ADD wins over the conf dir, so what ADD did is undone even if the file changed.
   */
  async tearDown(a: PodAttachment): Promise<void> {
    const rt = this.runtimeConf(a, false);
    const cached = this.runner.getCachedAttachments(a.sandboxId).find((c) => c.ifName === podInterface);
    if (cached) {
      const found = this.runner.getCachedConfig(cached.networkName, rt);
      if (found) return this.runner.del(found.list, rt);
    }
    let list: NetworkList;
    try {
      list = await this.network();
    } catch (err) {
      this.log.warn({ sandbox: a.sandboxId, err: errorMessage(err) }, 'no cached or configured CNI network: nothing to delete');
      return;
    }
    await this.runner.del(list, rt);
  }

  /** Attachments in the CNI result cache (one per pod that had its network set up). */
  cachedAttachments(): { containerId: string; networkName: string; ifName: string }[] {
    return this.runner.getCachedAttachments();
  }

  /** NetworkReady: a configuration exists and its plugins answer STATUS. */
  async ready(): Promise<{ ready: boolean; reason: string; message: string }> {
    try {
      const list = await this.network();
      await this.runner.status(list);
      return { ready: true, reason: '', message: '' };
    } catch (err) {
      const details = err instanceof BerthError && err.details ? ` (${err.details})` : '';
      return { ready: false, reason: 'NetworkPluginNotReady', message: `cni: ${errorMessage(err)}${details}` };
    }
  }
}

async function loopbackUp(netnsPath: string): Promise<void> {
  const session = await RtnlSession.open(netnsPath);
  try {
    const lo = await session.getLink('lo');
    if (!lo) throw new BerthError('failed-precondition', `pod network namespace ${netnsPath} has no lo interface`);
    await session.setUp(lo.index);
  } finally {
    session.close();
  }
}

export function podIps(result: CniResult | undefined): string[] {
  const ips = (result?.ips ?? []).map((ip) => ip.address.split('/')[0]!).filter(Boolean);
  return [...ips.filter((ip) => !ip.includes(':')), ...ips.filter((ip) => ip.includes(':'))];
}
