import { asBerthError, BerthError } from '../../lib/errors.js';
import { addressFamilies } from '../../lib/cni/result.js';
import type { CommandContext, GcContext } from '../../lib/cni/skeleton.js';
import { RtnlSession } from '../../lib/netlink/rtnl.js';
import { netnsExists } from '../../lib/netns.js';
import { ipamDel, ipamGc } from './ipam-delegate.js';
import type { BridgeConfig } from './config.js';
import { firewall } from './firewall.js';
import { hostVethName } from './plan.js';

// berth-bridge DEL and GC. DEL is best effort and idempotent (spec): every step runs even if an
// earlier one failed, "already gone" is success, and a missing or unset CNI_NETNS still
// releases the IP and the host-side state. The first real failure is reported at the end.

async function collect(errors: BerthError[], step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (err) {
    errors.push(asBerthError(err));
  }
}

function report(errors: BerthError[], what: string): void {
  if (errors.length === 0) return;
  const first = errors[0]!;
  throw new BerthError(first.kind, errors.length === 1 ? first.message : `${what}: ${errors.map((e) => e.message).join('; ')}`, {
    cniCode: first.cniCode,
    details: first.details,
  });
}

async function deleteLinks(ctx: CommandContext<BridgeConfig>): Promise<void> {
  if (ctx.netns && netnsExists(ctx.netns)) {
    const cont = await RtnlSession.open(ctx.netns);
    try {
      // Deleting one end of a veth pair deletes both.
      await cont.deleteLink(ctx.ifname);
    } finally {
      cont.close();
    }
  }
  // The namespace may be gone (then its veth went with it) or the ADD may have died half way:
  // the host end has a name derived from the attachment, so remove it if it is still there.
  const host = await RtnlSession.open();
  try {
    await host.deleteLink(hostVethName(ctx.containerId, ctx.ifname));
  } finally {
    host.close();
  }
}

export async function bridgeDel(ctx: CommandContext<BridgeConfig>): Promise<void> {
  const conf = ctx.conf;
  const errors: BerthError[] = [];
  const fw = firewall(conf, ctx.env);
  // The steps touch different things (lease files, links, firewall), so they run side by side:
  // the kernel's veth deletion alone takes ~30 ms.
  await Promise.all([
    conf.ipamType ? collect(errors, () => ipamDel(conf.ipamType!, ctx)) : undefined,
    collect(errors, () => deleteLinks(ctx)),
    conf.ipMasq ? collect(errors, () => fw.teardownMasquerade(ctx.containerId, ctx.ifname, addressFamilies(ctx.prevResult))) : undefined,
    conf.macSpoofCheck ? collect(errors, () => fw.teardownMacSpoofCheck(ctx.containerId, ctx.ifname)) : undefined,
  ]);
  report(errors, 'DEL finished with errors');
}

/** GC (spec 1.1): forward to IPAM, and drop firewall state of attachments no longer valid. */
export async function bridgeGc(ctx: GcContext<BridgeConfig>): Promise<void> {
  const conf = ctx.conf;
  const errors: BerthError[] = [];
  if (conf.ipamType) await collect(errors, () => ipamGc(conf.ipamType!, ctx));
  const fw = firewall(conf, ctx.env);
  await collect(errors, () => fw.gcMasquerade(ctx.validAttachments));
  if (conf.macSpoofCheck) await collect(errors, () => fw.gcMacSpoofCheck(ctx.validAttachments));
  report(errors, 'GC finished with errors');
}
