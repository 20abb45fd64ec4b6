import { BerthError } from '../../lib/errors.js';
import type { CommandContext } from '../../lib/cni/skeleton.js';
import type { CniResult } from '../../lib/cni/types.js';
import { NetlinkError, RtnlSession, type LinkInfo } from '../../lib/netlink/rtnl.js';
import { netnsExists, withNetns } from '../../lib/netns.js';
import { writeSysctl } from '../../lib/sysctl.js';
import { ipamAdd, ipamDel } from './ipam-delegate.js';
import type { BridgeConfig } from './config.js';
import { firewall } from './firewall.js';
import { buildResult, conflictingBridgeAddresses, planAttachment, hostVethName, type AttachmentPlan, type IpamOutcome } from './plan.js';

// berth-bridge ADD: bridge on the host, a veth pair with one end in the container (named
// CNI_IFNAME) and the other on the bridge, IPAM, addresses and routes in the container, the
// gateway on the bridge, forwarding, masquerading. A failure undoes what this ADD did.

/** Kernels built without bridge VLAN filtering refuse it with EOPNOTSUPP: say which field needs it. */
async function vlanSupport<T>(conf: BridgeConfig, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (conf.vlan > 0 && err instanceof NetlinkError && err.code === 'EOPNOTSUPP') {
      throw new BerthError('failed-precondition', `vlan: ${conf.vlan} needs bridge VLAN filtering, which this kernel does not support (${err.message})`);
    }
    throw err;
  }
}

export async function ensureBridge(host: RtnlSession, conf: BridgeConfig): Promise<LinkInfo> {
  let bridge = await host.getLink(conf.bridge);
  if (bridge && bridge.kind !== 'bridge') {
    throw new BerthError('failed-precondition', `bridge: ${conf.bridge} exists and is a ${bridge.kind ?? 'non-bridge'} device, not a bridge`);
  }
  if (!bridge) {
    bridge = await vlanSupport(conf, () => host.createBridge(conf.bridge, { ...(conf.mtu ? { mtu: conf.mtu } : {}), vlanFiltering: conf.vlan > 0 }));
  }
  if (conf.promiscMode && !bridge.promisc) await host.setPromisc(bridge.index, true);
  if (!bridge.up) {
    // The bridge's own link-local address would sit in DAD for 1-2 s once its first port is up,
    // and until then the node cannot solicit a pod's address: the first IPv6 packet forwarded
    // to a new pod (from another node, over the overlay) waits that long. The node owns this
    // segment, so the bridge skips DAD unless `enabledad` asks for it.
    if (!conf.enableDad) skipDad(conf.bridge);
    await host.setUp(bridge.index);
  }
  return bridge;
}

function skipDad(ifname: string): void {
  try {
    writeSysctl(`net.ipv6.conf.${ifname}.accept_dad`, '0');
  } catch (err) {
    // No IPv6 in this kernel or namespace: nothing to skip.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function attachHostVeth(host: RtnlSession, conf: BridgeConfig, bridge: LinkInfo, name: string): Promise<LinkInfo> {
  const veth = await host.getLink(name);
  if (!veth) throw new BerthError('internal', `host veth ${name} vanished after creation`);
  await host.setMaster(veth.index, bridge.index);
  if (conf.hairpinMode) await host.setHairpin(veth.index, true);
  if (conf.vlan > 0) {
    await vlanSupport(conf, () => host.addBridgeVlan(veth.index, conf.vlan, { pvid: true, untagged: true }));
    if (!conf.preserveDefaultVlan) await host.delBridgeVlan(veth.index, 1);
  }
  await host.setUp(veth.index);
  return veth;
}

async function configureContainer(cont: RtnlSession, ctx: CommandContext<BridgeConfig>, plan: AttachmentPlan): Promise<LinkInfo> {
  const conf = ctx.conf;
  const link = await cont.getLink(ctx.ifname);
  if (!link) throw new BerthError('internal', `container interface ${ctx.ifname} vanished after creation`);
  if (!conf.enableDad && plan.addresses.some((a) => a.family === 6)) {
    // Duplicate address detection would hold the IPv6 address back for a second or more.
    withNetns(ctx.netns!, () => writeSysctl(`net.ipv6.conf.${ctx.ifname}.accept_dad`, '0'));
  }
  for (const a of plan.addresses) await cont.addAddress(link.index, a.cidr, { noDad: !conf.enableDad });
  await cont.setUp(link.index);
  for (const r of plan.routes) {
    await cont.addRoute({
      dst: r.dst,
      index: link.index,
      ...(r.gw ? { gw: r.gw } : {}),
      ...(r.mtu ? { mtu: r.mtu } : {}),
      ...(r.advmss ? { advmss: r.advmss } : {}),
      ...(r.priority ? { priority: r.priority } : {}),
      ...(r.table ? { table: r.table } : {}),
    });
  }
  return link;
}

async function configureGateway(host: RtnlSession, conf: BridgeConfig, bridge: LinkInfo, plan: AttachmentPlan): Promise<void> {
  if (plan.bridgeAddresses.length === 0) return;
  const existing = (await host.listAddresses(bridge.index)).map((a) => a.cidr);
  for (const wanted of plan.bridgeAddresses) {
    for (const stale of conflictingBridgeAddresses(existing, wanted, conf.forceAddress, conf.bridge)) {
      await host.delAddress(bridge.index, stale);
    }
    if (!existing.includes(wanted)) await host.addAddress(bridge.index, wanted, { noDad: true });
  }
  if (plan.forwarding.includes(4)) writeSysctl('net.ipv4.ip_forward', '1');
  if (plan.forwarding.includes(6)) writeSysctl('net.ipv6.conf.all.forwarding', '1');
}

export async function bridgeAdd(ctx: CommandContext<BridgeConfig>): Promise<CniResult> {
  const conf = ctx.conf;
  const netns = ctx.netns!;
  if (!netnsExists(netns)) throw new BerthError('invalid-environment', `CNI_NETNS: ${netns} is not a network namespace`);
  const host = await RtnlSession.open();
  const cont = await RtnlSession.open(netns);
  const hostName = hostVethName(ctx.containerId, ctx.ifname);
  const undo: (() => Promise<unknown>)[] = [];
  try {
    if (await cont.getLink(ctx.ifname)) {
      throw new BerthError('already-exists', `CNI_IFNAME: interface ${ctx.ifname} already exists in ${netns}`);
    }
    const bridge = await ensureBridge(host, conf);
    // A host veth of this name is left over from an ADD of this same attachment that died.
    await host.deleteLink(hostName);
    await host.createVethPair({
      name: hostName,
      peerName: ctx.ifname,
      peerNetnsPath: netns,
      ...(conf.mtu ? { mtu: conf.mtu } : {}),
      ...(conf.mac ? { peerMac: conf.mac } : {}),
    });
    undo.push(() => host.deleteLink(hostName));
    const hostVeth = await attachHostVeth(host, conf, bridge, hostName);

    let ipam: IpamOutcome = { ips: [], routes: [] };
    if (conf.ipamType) {
      const type = conf.ipamType;
      ipam = await ipamAdd(type, ctx);
      undo.push(() => ipamDel(type, ctx));
    }
    const plan = planAttachment(conf, ctx.containerId, ctx.ifname, ipam);
    const contLink = await configureContainer(cont, ctx, plan);
    await configureGateway(host, conf, bridge, plan);

    const fw = firewall(conf, ctx.env);
    if (conf.ipMasq && plan.addresses.length > 0) {
      undo.push(() => fw.teardownMasquerade(ctx.containerId, ctx.ifname));
      await fw.setupMasquerade(ctx.containerId, ctx.ifname, plan.addresses.map((a) => a.cidr), plan.subnets);
    }
    if (conf.macSpoofCheck) {
      undo.push(() => fw.teardownMacSpoofCheck(ctx.containerId, ctx.ifname));
      await fw.setupMacSpoofCheck(ctx.containerId, ctx.ifname, hostName, contLink.mac);
    }
    const refreshedBridge = (await host.getLink(conf.bridge)) ?? bridge;
    return buildResult(
      ctx.prevResult,
      {
        bridge: { name: refreshedBridge.name, mac: refreshedBridge.mac },
        host: { name: hostVeth.name, mac: hostVeth.mac },
        container: { name: contLink.name, mac: contLink.mac, ...(conf.mtu ? { mtu: conf.mtu } : {}) },
      },
      plan,
      ipam,
      netns,
      conf.dns,
    );
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (cleanupErr) {
        ctx.log.warn({ err: String(cleanupErr) }, 'cleanup after a failed ADD did not complete');
      }
    }
    throw err;
  } finally {
    host.close();
    cont.close();
  }
}
