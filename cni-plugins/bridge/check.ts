import { BerthError } from '../../lib/errors.js';
import type { CommandContext, StatusContext } from '../../lib/cni/skeleton.js';
import { networkCidr, parseCidr } from '../../lib/ip.js';
import { RtnlSession } from '../../lib/netlink/rtnl.js';
import { netnsExists } from '../../lib/netns.js';
import { ipamCheck, ipamStatus } from './ipam-delegate.js';
import type { BridgeConfig } from './config.js';
import { firewall } from './firewall.js';

// berth-bridge CHECK (spec 0.4.0+): everything the ADD result promised is still there — the
// container interface (a veth, up, same MAC) with its addresses and routes, its host end on
// the bridge, the IPAM lease, the masquerade rules. STATUS (1.1.0): can an ADD work now?

function fail(message: string): never {
  throw new BerthError('failed-precondition', message);
}

export async function bridgeCheck(ctx: CommandContext<BridgeConfig>): Promise<void> {
  const conf = ctx.conf;
  const prev = ctx.prevResult!;
  const netns = ctx.netns!;
  if (conf.ipamType) await ipamCheck(conf.ipamType, ctx);
  if (!netnsExists(netns)) fail(`CNI_NETNS: ${netns} is not a network namespace`);

  const ifaceIndex = (prev.interfaces ?? []).findIndex((i) => i.name === ctx.ifname && i.sandbox === netns);
  if (ifaceIndex < 0) fail(`prevResult has no interface ${ctx.ifname} in ${netns}`);
  const expected = prev.interfaces![ifaceIndex]!;

  const host = await RtnlSession.open();
  const cont = await RtnlSession.open(netns);
  try {
    const link = await cont.getLink(ctx.ifname);
    if (!link) fail(`interface ${ctx.ifname} is missing from ${netns}`);
    if (link.kind !== 'veth') fail(`interface ${ctx.ifname} in ${netns} is a ${link.kind ?? 'non-veth'} device, not a veth`);
    if (expected.mac && link.mac.toLowerCase() !== expected.mac.toLowerCase()) {
      fail(`interface ${ctx.ifname} has MAC ${link.mac}, the ADD result says ${expected.mac}`);
    }
    if (!link.up) fail(`interface ${ctx.ifname} in ${netns} is down`);

    const have = new Set((await cont.listAddresses(link.index)).map((a) => a.cidr));
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== ifaceIndex) continue;
      if (!have.has(ip.address)) fail(`address ${ip.address} is missing from ${ctx.ifname} in ${netns}`);
    }
    for (const r of prev.routes ?? []) {
      const dst = parseCidr(r.dst, 'prevResult.routes[].dst');
      const routes = await cont.listRoutes({ family: dst.family, ...(r.table ? { table: r.table } : {}) });
      const found = routes.some((x) => networkCidr(parseCidr(x.dst)) === networkCidr(dst) && (!r.gw || x.gw === r.gw));
      if (!found) fail(`route to ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
    }

    const bridge = await host.getLink(conf.bridge);
    if (!bridge || bridge.kind !== 'bridge') fail(`bridge ${conf.bridge} is missing`);
    const peer = link.linkIndex === undefined ? undefined : await host.getLinkByIndex(link.linkIndex);
    if (!peer) fail(`the host end of ${ctx.ifname} is missing`);
    if (peer.masterIndex !== bridge.index) fail(`host veth ${peer.name} is not attached to bridge ${conf.bridge}`);
  } finally {
    host.close();
    cont.close();
  }
  if (conf.ipMasq) await firewall(conf, ctx.env).checkMasquerade(ctx.containerId, ctx.ifname);
}

export async function bridgeStatus(ctx: StatusContext<BridgeConfig>): Promise<void> {
  const conf = ctx.conf;
  if (conf.ipamType) await ipamStatus(conf.ipamType, ctx);
  if (conf.ipMasq || conf.macSpoofCheck) await firewall(conf, ctx.env).status();
}
