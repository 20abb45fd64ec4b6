import { BerthError } from '../../lib/errors.js';
import { addressFamilies } from '../../lib/cni/result.js';
import type { CniPlugin, CommandContext } from '../../lib/cni/skeleton.js';
import type { CniAttachment, CniResult } from '../../lib/cni/types.js';
import { ipFamily, type Family } from '../../lib/ip.js';
import { netfilter, nftRemoveScript, type FirewallBackend, type Netfilter } from '../../lib/netfilter.js';
import { writeSysctl } from '../../lib/sysctl.js';
import { mappingsFor, parsePortmapConfig, type PortmapConfig } from './config.js';
import {
  dnatChain,
  expectedDnat,
  iptablesPortmapRemove,
  iptablesPortmapSetup,
  nftPortmapSetup,
  nftTable,
  parsePortmapComment,
  parsePortmapSave,
  portmapComment,
  type PortmapTarget,
} from './plan.js';

// berth-portmap: a chained plugin that forwards host ports to the container (runtimeConfig
// .portMappings). It changes no interface, so its ADD result is the previous result unchanged.

type Owner = { network: string; containerId: string; ifname: string };
const families: Family[] = [4, 6];

/** The container's first address of each family, from the previous plugin's result. */
function targetsOf(ctx: CommandContext<PortmapConfig>, prev: CniResult): { target: PortmapTarget; family: Family }[] {
  const out: { target: PortmapTarget; family: Family }[] = [];
  for (const family of families) {
    const ip = prev.ips?.find((i) => ipFamily(i.address.split('/')[0]!) === family);
    if (!ip) continue;
    out.push({ family, target: { network: ctx.conf.network, containerId: ctx.containerId, ifname: ctx.ifname, address: ip.address.split('/')[0]! } });
  }
  return out;
}

/**
 * Connections to 127.0.0.1:hostPort are DNATed to the pod, which the kernel only routes out of
 * lo when route_localnet is set on the interface that leads to the pod (the bridge: the first
 * host-side interface of the previous result).
 */
function enableRouteLocalnet(prev: CniResult): void {
  const hostIf = prev.interfaces?.find((i) => !i.sandbox)?.name;
  if (hostIf) writeSysctl(`net.ipv4.conf.${hostIf}.route_localnet`, '1');
}

async function removeRules(
  nf: Netfilter,
  backend: FirewallBackend | 'both',
  select: (owner: Owner | undefined, chain: string) => boolean,
  inFamilies: Family[] = families,
): Promise<void> {
  if (backend !== 'nftables') {
    await Promise.all(inFamilies.map(async (family) => {
      const saved = parsePortmapSave(await nf.iptablesSave(family));
      const remove = new Set([...saved.chains].filter(([chain, owner]) => select(owner, chain)).map(([c]) => c));
      const input = iptablesPortmapRemove(saved, remove);
      if (input) await nf.iptablesRestore(family, input);
    }));
  }
  if (backend === 'iptables') return;
  const rules = (await nf.nftListRules('inet', nftTable)).filter((r) => r.comment && select(parsePortmapComment(r.comment), ''));
  const entries = rules.filter((r) => r.chain === 'prerouting' || r.chain === 'output');
  const chains = [...new Set(rules.filter((r) => r.chain.startsWith('berth-dn-')).map((r) => r.chain))];
  const script = nftRemoveScript('inet', nftTable, entries, chains);
  if (script) await nf.nftApply(script);
}

function ownedBy(ctx: { conf: PortmapConfig; containerId: string; ifname: string }) {
  const chain = dnatChain({ network: ctx.conf.network, containerId: ctx.containerId, ifname: ctx.ifname });
  const comment = portmapComment({ network: ctx.conf.network, containerId: ctx.containerId, ifname: ctx.ifname });
  return (owner: Owner | undefined, c: string) => c === chain || (owner !== undefined && portmapComment(owner) === comment);
}

async function add(ctx: CommandContext<PortmapConfig>): Promise<CniResult> {
  const conf = ctx.conf;
  const prev = ctx.prevResult;
  if (conf.mappings.length === 0) return prev ?? { cniVersion: ctx.cniVersion };
  if (!prev) throw new BerthError('invalid-config', 'prevResult: required, berth-portmap must follow a plugin that gives the container an address');
  const targets = targetsOf(ctx, prev);
  if (targets.length === 0) throw new BerthError('invalid-config', 'prevResult.ips: the container has no address to forward ports to');
  const nf = netfilter(ctx.env);
  const backend = nf.chooseBackend(conf.backend);
  try {
    if (conf.snat && targets.some((t) => t.family === 4 && mappingsFor(conf.mappings, 4).length > 0)) enableRouteLocalnet(prev);
    if (backend === 'nftables') {
      const script = nftPortmapSetup(conf, targets);
      if (script) await nf.nftApply(script);
    } else {
      for (const { target, family } of targets) {
        const saved = parsePortmapSave(await nf.iptablesSave(family));
        const input = iptablesPortmapSetup(conf, target, family, { masqJump: saved.masqJump });
        if (input) await nf.iptablesRestore(family, input);
      }
    }
  } catch (err) {
    // A half-applied ADD leaves nothing behind.
    await removeRules(nf, backend, ownedBy({ conf, containerId: ctx.containerId, ifname: ctx.ifname })).catch(() => undefined);
    throw err;
  }
  return prev;
}

async function del(ctx: CommandContext<PortmapConfig>): Promise<void> {
  // No prevResult or netns needed: the rules are found by the attachment in their comments. A
  // prevResult only narrows which families to look at.
  const nf = netfilter(ctx.env);
  await removeRules(nf, nf.chooseBackend(ctx.conf.backend), ownedBy(ctx), addressFamilies(ctx.prevResult));
}

async function check(ctx: CommandContext<PortmapConfig>): Promise<void> {
  const conf = ctx.conf;
  if (conf.mappings.length === 0) return;
  const targets = targetsOf(ctx, ctx.prevResult!);
  const nf = netfilter(ctx.env);
  const backend = nf.chooseBackend(conf.backend);
  if (backend === 'nftables') {
    const comment = portmapComment({ network: conf.network, containerId: ctx.containerId, ifname: ctx.ifname });
    const rules = await nf.nftListRules('inet', nftTable);
    const entries = rules.filter((r) => r.comment === comment && r.chain === 'prerouting').length;
    const wanted = targets.reduce((n, t) => n + mappingsFor(conf.mappings, t.family).length, 0);
    if (entries < wanted) throw new BerthError('failed-precondition', `portmap rules of ${ctx.containerId}: ${entries} of ${wanted} host port entries present in nft table inet ${nftTable}`);
    return;
  }
  // Only the families the pod has an address of are checked: an IPv4-only pod has no IPv6 rules
  // and that is correct (the reference 1.1.1 fails CHECK there).
  for (const { target, family } of targets) {
    const saved = parsePortmapSave(await nf.iptablesSave(family));
    const chain = dnatChain(target);
    const have = saved.dnat.get(chain) ?? [];
    for (const want of expectedDnat(conf, target, family)) {
      if (!have.includes(want)) throw new BerthError('failed-precondition', `portmap rule ${want} of ${ctx.containerId} is missing from chain ${chain} (IPv${family})`);
    }
    if (expectedDnat(conf, target, family).length > 0 && !saved.jumps.some((j) => j.chain === chain && j.from === 'PREROUTING')) {
      throw new BerthError('failed-precondition', `the PREROUTING jump to ${chain} of ${ctx.containerId} is missing (IPv${family})`);
    }
  }
}

async function gc(ctx: { conf: PortmapConfig; validAttachments: CniAttachment[]; env: NodeJS.ProcessEnv }): Promise<void> {
  const valid = (o: Owner) => ctx.validAttachments.some((v) => v.containerID === o.containerId && v.ifname === o.ifname);
  // Both backends: the configured one may have changed since the ADDs.
  await removeRules(netfilter(ctx.env), 'both', (owner) => owner !== undefined && owner.network === ctx.conf.network && !valid(owner));
}

export const portmapPlugin: CniPlugin<PortmapConfig> = {
  name: 'berth-portmap',
  about: 'forwards host ports to containers (runtimeConfig.portMappings) with iptables or nftables',
  parseConfig: parsePortmapConfig,
  add,
  del,
  check,
  gc,
  async status(ctx) {
    const nf = netfilter(ctx.env);
    nf.requireBackend(nf.chooseBackend(ctx.conf.backend));
  },
};
