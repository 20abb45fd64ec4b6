import { shortHash } from '../../lib/hash.js';
import { parseCidr, type Family } from '../../lib/ip.js';

// Pure planning of berth-bridge's firewall state, as text for ONE `iptables-restore --noflush`
// or `nft -f -` call per operation. Every rule carries a comment naming the attachment
// (network, container, interface), which is how DEL, CHECK and GC find them again without
// keeping any state of their own.

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
}

export const nftMasqTable = 'berth-bridge';
export const nftMacTable = 'berth-macspoof';

/** The comment on every rule of one attachment. */
export function attachmentComment(a: Attachment): string {
  return `berth-bridge net=${a.network} id=${a.containerId} if=${a.ifname}`;
}

const commentPattern = /berth-bridge net=([^\s"]+) id=([^\s"]+) if=([^\s"]+)/;

export function parseAttachmentComment(text: string): Attachment | undefined {
  const m = commentPattern.exec(text);
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

/** Per-attachment iptables chain: "BERTH-MASQ-" + 16 hex digits fits the 28-character limit. */
export function masqueradeChain(a: Attachment): string {
  return `BERTH-MASQ-${shortHash(`${a.network}/${a.containerId}/${a.ifname}`, 16)}`;
}

function multicast(family: Family): string {
  return family === 4 ? '224.0.0.0/4' : 'ff00::/8';
}

function quote(text: string): string {
  return `"${text.replace(/["\\]/g, '')}"`;
}

/**
 * iptables-restore input for one family: a chain for the attachment that accepts traffic to
 * its own subnets and masquerades the rest (except multicast), jumped to from POSTROUTING for
 * each container address of that family. Returns undefined when the family has no address.
 */
export function iptablesMasqueradeSetup(a: Attachment, addresses: string[], subnets: string[], family: Family): string | undefined {
  const ips = addresses.map((c) => parseCidr(c)).filter((c) => c.family === family);
  if (ips.length === 0) return undefined;
  const chain = masqueradeChain(a);
  const comment = `-m comment --comment ${quote(attachmentComment(a))}`;
  const hostLen = family === 4 ? 32 : 128;
  const lines = ['*nat', `:${chain} - [0:0]`];
  for (const s of subnets.map((c) => parseCidr(c)).filter((c) => c.family === family)) {
    lines.push(`-A ${chain} -d ${s.address}/${s.prefixLength} ${comment} -j ACCEPT`);
  }
  lines.push(`-A ${chain} ! -d ${multicast(family)} ${comment} -j MASQUERADE`);
  for (const ip of ips) lines.push(`-A POSTROUTING -s ${ip.address}/${hostLen} ${comment} -j ${chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export interface SavedChains {
  /** POSTROUTING rules (as iptables-save prints them, without "-A ") that jump to berth chains. */
  jumps: { chain: string; rule: string }[];
  /** berth masquerade chains that exist, with the attachment their rules name. */
  chains: Map<string, Attachment | undefined>;
}

/** Read the berth parts of `iptables-save -t nat` output. */
export function parseIptablesSave(text: string): SavedChains {
  const jumps: SavedChains['jumps'] = [];
  const chains = new Map<string, Attachment | undefined>();
  for (const line of text.split('\n')) {
    const decl = /^:(BERTH-MASQ-[0-9a-f]+) /.exec(line);
    if (decl) {
      if (!chains.has(decl[1]!)) chains.set(decl[1]!, undefined);
      continue;
    }
    const jump = /^-A POSTROUTING (.* -j (BERTH-MASQ-[0-9a-f]+))$/.exec(line);
    if (jump) jumps.push({ chain: jump[2]!, rule: jump[1]! });
    const inChain = /^-A (BERTH-MASQ-[0-9a-f]+) /.exec(line);
    const owner = parseAttachmentComment(line);
    if (inChain && owner) chains.set(inChain[1]!, owner);
    if (jump && owner && !chains.get(jump[2]!)) chains.set(jump[2]!, owner);
  }
  return { jumps, chains };
}

/** iptables-restore input that removes the given berth chains and every jump to them. */
export function iptablesRemoveChains(saved: SavedChains, remove: Set<string>): string | undefined {
  if (remove.size === 0) return undefined;
  const lines = ['*nat'];
  for (const j of saved.jumps) if (remove.has(j.chain)) lines.push(`-D POSTROUTING ${j.rule}`);
  for (const c of remove) if (saved.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`);
  lines.push('COMMIT', '');
  return lines.length > 3 ? lines.join('\n') : undefined;
}

/** nft script: one masquerade rule per container address, in berth's own inet table. */
export function nftMasqueradeSetup(a: Attachment, addresses: string[], subnets: string[]): string | undefined {
  const ips = addresses.map((c) => parseCidr(c));
  if (ips.length === 0) return undefined;
  const lines = [
    `add table inet ${nftMasqTable}`,
    `add chain inet ${nftMasqTable} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const ip of ips) {
    const f = ip.family === 4 ? 'ip' : 'ip6';
    const own = subnets.map((c) => parseCidr(c)).filter((c) => c.family === ip.family).map((c) => `${c.address}/${c.prefixLength}`);
    const exempt = [...own, multicast(ip.family)].map((d) => `${f} daddr != ${d}`).join(' ');
    lines.push(`add rule inet ${nftMasqTable} postrouting ${f} saddr ${ip.address} ${exempt} masquerade comment ${quote(attachmentComment(a))}`);
  }
  return lines.join('\n') + '\n';
}

/** Per-attachment bridge-family chain name for the MAC spoof check. */
export function macChain(a: Attachment): string {
  return `mac-${shortHash(`${a.network}/${a.containerId}/${a.ifname}`, 16)}`;
}

/**
 * nft script for macspoofchk: frames entering the bridge from the pod's host veth must carry
 * the pod's MAC; anything else is dropped before the bridge forwards it.
 */
export function nftMacSpoofSetup(a: Attachment, hostVeth: string, mac: string): string {
  const chain = macChain(a);
  const comment = quote(attachmentComment(a));
  return [
    `add table bridge ${nftMacTable}`,
    `add chain bridge ${nftMacTable} prerouting { type filter hook prerouting priority -300; policy accept; }`,
    `add chain bridge ${nftMacTable} ${chain}`,
    `flush chain bridge ${nftMacTable} ${chain}`,
    `add rule bridge ${nftMacTable} ${chain} ether saddr ${mac} return comment ${comment}`,
    `add rule bridge ${nftMacTable} ${chain} drop comment ${comment}`,
    `add rule bridge ${nftMacTable} prerouting iifname ${quote(hostVeth)} jump ${chain} comment ${comment}`,
    '',
  ].join('\n');
}
