import { BerthError } from '../../lib/errors.js';
import type { CniPlugin, CommandContext } from '../../lib/cni/skeleton.js';
import type { CniIpConfig, CniResult } from '../../lib/cni/types.js';
import { RtnlSession, withRtnl } from '../../lib/netlink/rtnl.js';

// The loopback plugin has no options of its own: the whole config is the spec's common keys,
// which the skeleton checks. Like the reference plugin it always acts on `lo`, whatever
// CNI_IFNAME says, since a namespace has exactly one loopback interface.

export type LoopbackConfig = Record<string, never>;

const LO = 'lo';

function isLoopbackAddress(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

/** The namespace's loopback link, or an error naming the namespace. */
async function loopbackLink(session: RtnlSession, netns: string) {
  const lo = await session.getLink(LO);
  if (!lo) throw new BerthError('failed-precondition', `network namespace ${netns} has no ${LO} interface`);
  return lo;
}

async function add(ctx: CommandContext<LoopbackConfig>): Promise<CniResult> {
  const netns = ctx.netns as string; // required for ADD by the skeleton
  return withRtnl(netns, async (session) => {
    const lo = await loopbackLink(session, netns);
    await session.setUp(lo.index);
    // A chained loopback adds nothing to an earlier plugin's result (spec: pass it through).
    if (ctx.prevResult) return ctx.prevResult;
    // The kernel assigns 127.0.0.1/8 and ::1/128 when lo comes up; report what is there
    // (no ::1 when IPv6 is disabled in the namespace).
    const ips: CniIpConfig[] = (await session.listAddresses(lo.index))
      .filter((a) => isLoopbackAddress(a.address))
      .sort((a, b) => a.family - b.family)
      .map((a) => ({ address: a.cidr, interface: 0 }));
    return { cniVersion: ctx.cniVersion, interfaces: [{ name: LO, mac: lo.mac || '00:00:00:00:00:00', sandbox: netns }], ips };
  });
}

async function del(ctx: CommandContext<LoopbackConfig>): Promise<void> {
  // DEL must succeed when the namespace is already gone (or was never given). A path that is
  // no longer a namespace (a leftover file after the namespace was unmounted) is gone as well.
  if (!ctx.netns) return;
  let session: RtnlSession;
  try {
    session = await RtnlSession.open(ctx.netns);
  } catch (err) {
    if (err instanceof BerthError && (err.kind === 'not-found' || err.kind === 'invalid-argument')) return;
    throw err;
  }
  try {
    const lo = await session.getLink(LO);
    if (lo?.up) await session.setDown(lo.index);
  } finally {
    session.close();
  }
}

async function check(ctx: CommandContext<LoopbackConfig>): Promise<void> {
  const netns = ctx.netns as string;
  await withRtnl(netns, async (session) => {
    const lo = await loopbackLink(session, netns);
    if (!lo.up) throw new BerthError('failed-precondition', `loopback interface ${LO} in ${netns} is down`);
  });
}

export const loopbackPlugin: CniPlugin<LoopbackConfig> = {
  name: 'berth-loopback',
  about: 'brings the loopback interface of a pod network namespace up',
  parseConfig: () => ({}),
  add,
  del,
  check,
  // Nothing outlives an attachment: no IPAM, no host state to collect.
  gc: async () => {},
  // Always ready: needs nothing but the kernel.
  status: async () => {},
};
