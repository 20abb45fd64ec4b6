import { BerthError } from '../../lib/errors.js';
import type { CniPlugin, CommandContext } from '../../lib/cni/skeleton.js';
import type { CniAttachment, CniResult } from '../../lib/cni/types.js';
import type { RtnlSession} from '../../lib/netlink/rtnl.js';
import { withRtnl, type LinkInfo } from '../../lib/netlink/rtnl.js';
import { TC, decodeFilterClass, decodeHtbRate, decodeRedirectTarget, decodeTbf, type TbfSpec } from '../../lib/netlink/tc-messages.js';
import { netnsExists } from '../../lib/netns.js';
import { parseBandwidthConfig, type BandwidthConfig } from './config.js';
import { ifbAlias, ifbName, parseIfbAlias, tbfFor } from './plan.js';

// berth-bandwidth: a chained plugin that shapes a pod's traffic with token bucket filters, all
// through rtnetlink (no `tc`): see plan.ts for which qdisc shapes which direction. Its ADD
// result is the previous one plus the ifb device, as the reference reports it.

type Ctx = CommandContext<BandwidthConfig>;

/** The host-side end of the pod's veth: the peer of CNI_IFNAME in the pod's namespace. */
async function hostVeth(ctx: Ctx, host: RtnlSession): Promise<LinkInfo> {
  const netns = ctx.netns as string;
  const inPod = await withRtnl(netns, (s) => s.getLink(ctx.ifname));
  if (!inPod) throw new BerthError('not-found', `interface ${ctx.ifname} does not exist in ${netns}`);
  if (inPod.kind !== 'veth' || !inPod.linkIndex) {
    throw new BerthError('failed-precondition', `interface ${ctx.ifname} in ${netns} is a ${inPod.kind ?? 'device'} without a peer: berth-bandwidth shapes veth pairs only`);
  }
  const peer = await host.getLinkByIndex(inPod.linkIndex);
  if (!peer || peer.kind !== 'veth') throw new BerthError('not-found', `the host-side peer (#${inPod.linkIndex}) of ${ctx.ifname} in ${netns} is not a veth in the host namespace`);
  return peer;
}

function requirePrev(ctx: Ctx): CniResult {
  if (!ctx.prevResult) throw new BerthError('invalid-config', 'prevResult: berth-bandwidth must be chained after a plugin that creates the interface');
  return ctx.prevResult;
}

/**
 * Shape what leaves a link: a TBF as its root, or, with subnets, an HTB whose class 1:1 holds the
 * limit and whose filters pick the subnets' packets by `field` (the far end's address).
 */
async function shape(host: RtnlSession, index: number, spec: TbfSpec, conf: BandwidthConfig, field: 'src' | 'dst'): Promise<void> {
  if (!conf.subnets) return host.replaceRootTbf(index, spec);
  // shapedSubnets: everything goes unshaped (1:2) but the subnets; unshapedSubnets: the reverse.
  await host.replaceRootHtbShaping(index, spec, conf.subnets.mode === 'shaped' ? 2 : 1, conf.subnets.list, field);
}

/** The rate of the TBF that shapes a link, wherever shape() put it; a message when it is not there as configured. */
async function shapingProblem(host: RtnlSession, index: number, want: number, conf: BandwidthConfig): Promise<string | undefined> {
  const qdiscs = await host.listQdiscs(index);
  const root = qdiscs.find((q) => q.parent === TC.TC_H_ROOT);
  const wantRoot = conf.subnets ? 'htb' : 'tbf';
  if (root?.kind !== wantRoot) return `${root ? `a ${root.kind}` : 'no'} root qdisc, want ${wantRoot}`;
  if (!conf.subnets) {
    const have = decodeTbf(root.options)?.rate;
    return have === want ? undefined : `a tbf at ${have} B/s, want ${want} B/s`;
  }
  const shaped = (await host.listClasses(index)).find((c) => c.handle === ((TC.HTB_HANDLE | 1) >>> 0));
  const have = shaped ? decodeHtbRate(shaped.options) : undefined;
  if (have !== want) return `${shaped ? `an htb class 1:1 at ${have} B/s` : 'no htb class 1:1'}, want ${want} B/s`;
  const filters = (await host.listFilters(index, TC.HTB_HANDLE)).filter((f) => decodeFilterClass(f.options) !== undefined);
  if (filters.length < conf.subnets.list.length) return `${filters.length} subnet filters under 1:0, want ${conf.subnets.list.length}`;
  return undefined;
}

async function add(ctx: Ctx): Promise<CniResult> {
  const { conf } = ctx;
  if (!conf.ingress && !conf.egress) return ctx.prevResult ?? { cniVersion: ctx.cniVersion };
  const prev = requirePrev(ctx);
  const name = ifbName(conf.network, ctx.containerId);
  return withRtnl(undefined, async (host) => {
    const veth = await hostVeth(ctx, host);
    try {
      const interfaces = [...(prev.interfaces ?? [])];
      // Traffic to the pod leaves through the host veth: the far end is its source.
      if (conf.ingress) await shape(host, veth.index, tbfFor(conf.ingress), conf, 'src');
      if (conf.egress) {
        // A leftover from an ADD that failed half-way (the runtime then DELs, but may not have).
        await host.deleteLink(name);
        const ifb = await host.createIfb({ name, mtu: veth.mtu, txQLen: veth.txQLen ?? 1000, alias: ifbAlias({ network: conf.network, containerId: ctx.containerId, ifname: ctx.ifname }) });
        await host.setUp(ifb.index);
        // Traffic from the pod leaves through the ifb: the far end is its destination.
        await shape(host, ifb.index, tbfFor(conf.egress), conf, 'dst');
        await host.deleteQdisc(veth.index, TC.TC_H_INGRESS);
        await host.addIngressQdisc(veth.index);
        await host.addRedirectAllFilter(veth.index, ifb.index);
        interfaces.push({ name, mac: ifb.mac });
      }
      return { ...prev, cniVersion: ctx.cniVersion, interfaces };
    } catch (err) {
      await undo(host, veth.index, name).catch(() => undefined);
      throw err;
    }
  });
}

/** Remove what ADD made: the ifb, and the veth's qdiscs when the veth is still there. */
async function undo(host: RtnlSession, vethIndex: number | undefined, name: string): Promise<void> {
  await host.deleteLink(name);
  if (vethIndex === undefined) return;
  await host.deleteQdisc(vethIndex, TC.TC_H_INGRESS);
  const root = (await host.listQdiscs(vethIndex)).find((q) => q.parent === TC.TC_H_ROOT);
  if (root?.kind === 'tbf' || root?.kind === 'htb') await host.deleteQdisc(vethIndex, TC.TC_H_ROOT);
}

async function del(ctx: Ctx): Promise<void> {
  // The ifb is found by name, so DEL works without the namespace or a prevResult. The veth's
  // qdiscs go with the veth when the main plugin deletes it; they are removed here too when the
  // namespace (and so the pair) is still there, so a DEL leaves no shaping behind.
  const name = ifbName(ctx.conf.network, ctx.containerId);
  await withRtnl(undefined, async (host) => {
    let vethIndex: number | undefined;
    if (ctx.netns && netnsExists(ctx.netns)) {
      vethIndex = await hostVeth(ctx, host).then((v) => v.index, () => undefined);
    }
    await undo(host, vethIndex, name);
  });
}

async function check(ctx: Ctx): Promise<void> {
  const { conf } = ctx;
  if (!conf.ingress && !conf.egress) return;
  requirePrev(ctx);
  await withRtnl(undefined, async (host) => {
    const veth = await hostVeth(ctx, host);
    const qdiscs = await host.listQdiscs(veth.index);
    if (conf.ingress) {
      const problem = await shapingProblem(host, veth.index, tbfFor(conf.ingress).rate, conf);
      if (problem) throw new BerthError('failed-precondition', `ingress shaping of ${ctx.containerId}: ${veth.name} has ${problem}`);
    }
    if (conf.egress) {
      const name = ifbName(conf.network, ctx.containerId);
      const ifb = await host.getLink(name);
      if (!ifb) throw new BerthError('failed-precondition', `egress shaping of ${ctx.containerId}: ifb device ${name} is missing`);
      const problem = await shapingProblem(host, ifb.index, tbfFor(conf.egress).rate, conf);
      if (problem) throw new BerthError('failed-precondition', `egress shaping of ${ctx.containerId}: ${name} has ${problem}`);
      if (!qdiscs.some((q) => q.parent === TC.TC_H_INGRESS && q.kind === 'ingress')) {
        throw new BerthError('failed-precondition', `egress shaping of ${ctx.containerId}: ${veth.name} has no ingress qdisc`);
      }
      const filters = await host.listFilters(veth.index, TC.INGRESS_HANDLE);
      if (!filters.some((f) => decodeRedirectTarget(f.options) === ifb.index)) {
        throw new BerthError('failed-precondition', `egress shaping of ${ctx.containerId}: no filter on ${veth.name} redirects to ${name}`);
      }
    }
  });
}

async function gc(ctx: { conf: BandwidthConfig; validAttachments: CniAttachment[] }): Promise<void> {
  const valid = (containerId: string, ifname: string) => ctx.validAttachments.some((v) => v.containerID === containerId && v.ifname === ifname);
  await withRtnl(undefined, async (host) => {
    const failures: string[] = [];
    for (const link of await host.listLinks()) {
      const owner = link.kind === 'ifb' ? parseIfbAlias(link.alias) : undefined;
      if (!owner || owner.network !== ctx.conf.network || valid(owner.containerId, owner.ifname)) continue;
      // Keep going on errors (spec: GC is best effort) and report them all at the end.
      await host.deleteLink(link.name).catch((err: Error) => failures.push(`${link.name}: ${err.message}`));
    }
    if (failures.length > 0) throw new BerthError('io', `GC could not remove ifb devices: ${failures.join('; ')}`);
  });
}

export const bandwidthPlugin: CniPlugin<BandwidthConfig> = {
  name: 'berth-bandwidth',
  about: 'shapes a pod\'s ingress and egress traffic with token bucket filters (runtimeConfig.bandwidth)',
  parseConfig: parseBandwidthConfig,
  add,
  del,
  check,
  gc,
  // Needs nothing but the kernel's tbf, ingress, u32, mirred and ifb, which ADD reports if missing.
  status: async () => {},
};
