import type { Family } from '../lib/ip.js';
import { netfilter, type FirewallBackend } from '../lib/netfilter.js';

// Masquerade for traffic leaving the cluster network (--ip-masq), flannel's rule set:
//   pod -> pod anywhere in the cluster: untouched
//   outside -> this node's pods: untouched (e.g. NodePort traffic keeps its source)
//   pod -> outside (not multicast): masqueraded
//   outside -> a pod of another node: masqueraded (so the answer comes back through us)
// One chain (iptables) or one table (nftables) owned by berth-overlayd, applied in one call,
// checked at every resync and removed on shutdown.

export const masqChain = 'BERTH-OVERLAY-MASQ';
export const masqTable = 'berth-overlay';
const jumpComment = 'berth-overlayd: masquerade traffic leaving the cluster network';

export interface MasqScope {
  family: Family;
  /** Cluster network and this node's subnet (CIDRs). */
  network: string;
  subnet: string;
}

const multicast = (f: Family): string => (f === 4 ? '224.0.0.0/4' : 'ff00::/8');

/** The chain's rules, as iptables arguments. */
export function masqRules(s: MasqScope): string[][] {
  return [
    ['-s', s.network, '-d', s.network, '-j', 'RETURN'],
    ['!', '-s', s.network, '-d', s.subnet, '-j', 'RETURN'],
    ['-s', s.network, '!', '-d', multicast(s.family), '-j', 'MASQUERADE', '--random-fully'],
    ['!', '-s', s.network, '-d', s.network, '-j', 'MASQUERADE', '--random-fully'],
  ];
}

const jumpRule = ['-m', 'comment', '--comment', `"${jumpComment}"`, '-j', masqChain];

/** iptables-restore input that (re)writes the chain and adds the jump when `addJump`. */
export function iptablesMasqSetup(s: MasqScope, addJump: boolean): string {
  const lines = ['*nat', `:${masqChain} - [0:0]`, ...masqRules(s).map((r) => `-A ${masqChain} ${r.join(' ')}`)];
  if (addJump) lines.push(`-I POSTROUTING 1 ${jumpRule.join(' ')}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Whether iptables-save output has our jump and the whole chain. */
export function iptablesMasqPresent(saved: string, s: MasqScope): { jump: boolean; chain: boolean } {
  const lines = saved.split('\n');
  const jump = lines.some((l) => l.startsWith('-A POSTROUTING') && l.includes(`-j ${masqChain}`));
  const ours = lines.filter((l) => l.startsWith(`-A ${masqChain} `)).length;
  return { jump, chain: ours === masqRules(s).length };
}

export function iptablesMasqRemove(saved: string): string | undefined {
  const jumps = saved.split('\n').filter((l) => l.startsWith('-A POSTROUTING') && l.includes(`-j ${masqChain}`));
  const hasChain = saved.split('\n').some((l) => l.startsWith(`:${masqChain} `));
  if (!jumps.length && !hasChain) return undefined;
  return ['*nat', ...jumps.map((j) => j.replace(/^-A /, '-D ')), ...(hasChain ? [`-F ${masqChain}`, `-X ${masqChain}`] : []), 'COMMIT', ''].join('\n');
}

/** An nft script that replaces our table atomically (declare, delete, define in one transaction). */
export function nftMasqSetup(scopes: MasqScope[]): string {
  const rules: string[] = [];
  for (const s of scopes) {
    const ip = s.family === 4 ? 'ip' : 'ip6';
    rules.push(
      `    meta nfproto ${s.family === 4 ? 'ipv4' : 'ipv6'} ${ip} saddr ${s.network} ${ip} daddr ${s.network} return`,
      `    meta nfproto ${s.family === 4 ? 'ipv4' : 'ipv6'} ${ip} saddr != ${s.network} ${ip} daddr ${s.subnet} return`,
      `    meta nfproto ${s.family === 4 ? 'ipv4' : 'ipv6'} ${ip} saddr ${s.network} ${ip} daddr != ${multicast(s.family)} masquerade fully-random`,
      `    meta nfproto ${s.family === 4 ? 'ipv4' : 'ipv6'} ${ip} saddr != ${s.network} ${ip} daddr ${s.network} masquerade fully-random`,
    );
  }
  return [
    `table inet ${masqTable} {}`,
    `delete table inet ${masqTable}`,
    `table inet ${masqTable} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...rules,
    '  }',
    '}',
    '',
  ].join('\n');
}

export class Masquerade {
  private readonly nf = netfilter(process.env);
  readonly backend: FirewallBackend;

  constructor(
    private readonly scopes: MasqScope[],
    backend: FirewallBackend | undefined,
  ) {
    this.backend = this.nf.chooseBackend(backend);
    this.nf.requireBackend(this.backend);
  }

  /** Install the rules (replacing ours if present). */
  async apply(): Promise<void> {
    if (this.backend === 'nftables') return this.nf.nftApply(nftMasqSetup(this.scopes));
    for (const s of this.scopes) {
      const present = iptablesMasqPresent(await this.nf.iptablesSave(s.family), s);
      await this.nf.iptablesRestore(s.family, iptablesMasqSetup(s, !present.jump));
    }
  }

  /** Re-install when someone removed or changed our rules; true when a repair was needed. */
  async repair(): Promise<boolean> {
    if (this.backend === 'nftables') {
      const rules = await this.nf.nftListRules('inet', masqTable);
      if (rules.length === this.scopes.length * 4) return false;
      await this.apply();
      return true;
    }
    let repaired = false;
    for (const s of this.scopes) {
      const present = iptablesMasqPresent(await this.nf.iptablesSave(s.family), s);
      if (present.jump && present.chain) continue;
      await this.nf.iptablesRestore(s.family, iptablesMasqSetup(s, !present.jump));
      repaired = true;
    }
    return repaired;
  }

  async remove(): Promise<void> {
    if (this.backend === 'nftables') {
      await this.nf.nftApply(`table inet ${masqTable} {}\ndelete table inet ${masqTable}\n`);
      return;
    }
    for (const s of this.scopes) {
      const input = iptablesMasqRemove(await this.nf.iptablesSave(s.family));
      if (input) await this.nf.iptablesRestore(s.family, input);
    }
  }
}
