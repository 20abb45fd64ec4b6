import { shortHash } from '../../lib/hash.js';
import type { Family } from '../../lib/ip.js';
import { mappingsFor, type PortmapConfig } from './config.js';

// Pure planning of berth-portmap's rules, one batch per operation: iptables-restore input per
// family, or an nft script. Every per-container rule carries a comment naming the attachment,
// which is how DEL, CHECK and GC find them again.
//
// Paths a packet to hostPort takes:
//   from outside or another pod: PREROUTING (local destination) -> DNAT to the container
//   from the host itself, 127.0.0.1 included: OUTPUT (local destination) -> DNAT; traffic from
//     127.0.0.1 is marked for masquerading (route_localnet lets it leave lo)
//   from the container to its own host port (hairpin): marked for masquerading, so the reply
//     comes back through the host

export interface PortmapTarget {
  network: string;
  containerId: string;
  ifname: string;
  /** The container's address of this family. */
  address: string;
}

export function portmapComment(t: { network: string; containerId: string; ifname: string }): string {
  return `berth-portmap net=${t.network} id=${t.containerId} if=${t.ifname}`;
}

const commentPattern = /berth-portmap net=([^\s"]+) id=([^\s"]+) if=([^\s"]+)/;

export function parsePortmapComment(text: string): { network: string; containerId: string; ifname: string } | undefined {
  const m = commentPattern.exec(text);
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

/** Per-attachment DNAT chain (iptables; the nft chain uses the same suffix). */
export function dnatChain(t: { network: string; containerId: string; ifname: string }): string {
  return `BERTH-DN-${shortHash(`${t.network}/${t.containerId}/${t.ifname}`, 16)}`;
}

export const setMarkChain = 'BERTH-HOSTPORT-SETMARK';
export const masqChain = 'BERTH-HOSTPORT-MASQ';
export const nftTable = 'berth-portmap';

const loopback = (f: Family) => (f === 4 ? '127.0.0.1/32' : '::1/128');
const hostBits = (f: Family) => (f === 4 ? 32 : 128);
const quote = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

export function markOf(conf: PortmapConfig): string {
  const bit = (1 << conf.markMasqBit) >>> 0;
  return `0x${bit.toString(16)}`;
}

/**
 * iptables-restore input for one family. `existing` says which shared pieces already exist, so
 * the batch never re-declares (and so flushes) a chain holding other containers' rules. The
 * shared chains hold static rules only and are rewritten whole in the same atomic batch.
 */
export function iptablesPortmapSetup(
  conf: PortmapConfig,
  t: PortmapTarget,
  family: Family,
  existing: { masqJump: boolean },
): string | undefined {
  const mappings = mappingsFor(conf.mappings, family);
  if (mappings.length === 0) return undefined;
  const chain = dnatChain(t);
  const comment = `-m comment --comment ${quote(portmapComment(t))}`;
  const mark = markOf(conf);
  const markTarget = conf.externalSetMarkChain ?? setMarkChain;
  const conditions = (family === 4 ? conf.conditionsV4 : conf.conditionsV6).join(' ');
  const dest = family === 4 ? t.address : `[${t.address}]`;
  const lines = ['*nat'];
  if (!conf.externalSetMarkChain) {
    lines.push(`:${setMarkChain} - [0:0]`, `-A ${setMarkChain} -j MARK --set-xmark ${mark}/${mark}`);
    lines.push(`:${masqChain} - [0:0]`, `-A ${masqChain} -m mark --mark ${mark}/${mark} -j MASQUERADE`);
    if (!existing.masqJump) lines.push(`-A POSTROUTING -j ${masqChain}`);
  }
  lines.push(`:${chain} - [0:0]`);
  for (const m of mappings) {
    const match = `${m.hostIP ? `-d ${m.hostIP}/${hostBits(family)} ` : ''}-p ${m.protocol} --dport ${m.hostPort}`;
    if (conf.snat) {
      lines.push(`-A ${chain} -s ${t.address}/${hostBits(family)} ${match} ${comment} -j ${markTarget}`);
      lines.push(`-A ${chain} -s ${loopback(family)} ${match} ${comment} -j ${markTarget}`);
    }
    if (conf.masqAll) lines.push(`-A ${chain} ${match} ${comment} -j ${markTarget}`);
    lines.push(`-A ${chain} ${match} ${comment} -j DNAT --to-destination ${dest}:${m.containerPort}`);
    const entry = `-m addrtype --dst-type LOCAL -p ${m.protocol} --dport ${m.hostPort}${conditions ? ` ${conditions}` : ''} ${comment} -j ${chain}`;
    lines.push(`-A PREROUTING ${entry}`, `-A OUTPUT ${entry}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export interface SavedPortmap {
  /** Rules in PREROUTING/OUTPUT jumping to a berth DNAT chain: [builtin chain, rule text]. */
  jumps: { from: string; chain: string; rule: string }[];
  /** DNAT chains with the attachment their comment names. */
  chains: Map<string, { network: string; containerId: string; ifname: string } | undefined>;
  masqJump: boolean;
  /** DNAT chain -> the "--dport N ... --to-destination" pairs present, for CHECK. */
  dnat: Map<string, string[]>;
}

export function parsePortmapSave(text: string): SavedPortmap {
  const saved: SavedPortmap = { jumps: [], chains: new Map(), masqJump: false, dnat: new Map() };
  for (const line of text.split('\n')) {
    const decl = /^:(BERTH-DN-[0-9a-f]+) /.exec(line);
    if (decl && !saved.chains.has(decl[1]!)) saved.chains.set(decl[1]!, undefined);
    if (line === `-A POSTROUTING -j ${masqChain}`) saved.masqJump = true;
    const jump = /^-A (PREROUTING|OUTPUT) (.* -j (BERTH-DN-[0-9a-f]+))$/.exec(line);
    if (jump) {
      saved.jumps.push({ from: jump[1]!, chain: jump[3]!, rule: jump[2]! });
      // The jumps name the owner too, so a chain emptied behind our back is still attributed.
      const owner = parsePortmapComment(line);
      if (owner && !saved.chains.get(jump[3]!)) saved.chains.set(jump[3]!, owner);
    }
    const inChain = /^-A (BERTH-DN-[0-9a-f]+) /.exec(line);
    if (inChain) {
      const owner = parsePortmapComment(line);
      if (owner) saved.chains.set(inChain[1]!, owner);
      const dnat = /--dport (\d+) .*-j DNAT --to-destination (\S+)/.exec(line);
      if (dnat) saved.dnat.set(inChain[1]!, [...(saved.dnat.get(inChain[1]!) ?? []), `${dnat[1]}->${dnat[2]}`]);
    }
  }
  return saved;
}

export function iptablesPortmapRemove(saved: SavedPortmap, remove: Set<string>): string | undefined {
  const lines = ['*nat'];
  for (const j of saved.jumps) if (remove.has(j.chain)) lines.push(`-D ${j.from} ${j.rule}`);
  for (const c of remove) if (saved.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`);
  if (lines.length === 1) return undefined;
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The DNAT entries CHECK expects in the chain: "hostPort->address:containerPort". */
export function expectedDnat(conf: PortmapConfig, t: PortmapTarget, family: Family): string[] {
  const dest = family === 4 ? t.address : `[${t.address}]`;
  return mappingsFor(conf.mappings, family).map((m) => `${m.hostPort}->${dest}:${m.containerPort}`);
}

/** nft script: berth's own inet table; base chains hold static rules and are rewritten whole. */
export function nftPortmapSetup(conf: PortmapConfig, targets: { target: PortmapTarget; family: Family }[]): string | undefined {
  const work = targets.filter(({ family }) => mappingsFor(conf.mappings, family).length > 0);
  if (work.length === 0) return undefined;
  const mark = markOf(conf);
  const first = work[0]!.target;
  const chain = dnatChain(first).toLowerCase();
  // nft chain names are case sensitive; lower case keeps them apart from iptables-nft's chains.
  const comment = `comment ${quote(portmapComment(first))}`;
  const lines = [
    `add table inet ${nftTable}`,
    `add chain inet ${nftTable} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain inet ${nftTable} output { type nat hook output priority -100; policy accept; }`,
    `add chain inet ${nftTable} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain inet ${nftTable} postrouting`,
    `add rule inet ${nftTable} postrouting meta mark & ${mark} == ${mark} masquerade`,
    `add chain inet ${nftTable} ${chain}`,
    `flush chain inet ${nftTable} ${chain}`,
  ];
  for (const { target, family } of work) {
    const f = family === 4 ? 'ip' : 'ip6';
    const conditions = (family === 4 ? conf.conditionsV4 : conf.conditionsV6).join(' ');
    const dest = family === 4 ? target.address : `[${target.address}]`;
    for (const m of mappingsFor(conf.mappings, family)) {
      const match = `${m.hostIP ? `${f} daddr ${m.hostIP} ` : `meta nfproto ${family === 4 ? 'ipv4' : 'ipv6'} `}${m.protocol} dport ${m.hostPort}`;
      const setMark = `meta mark set mark or ${mark}`;
      if (conf.snat) {
        lines.push(`add rule inet ${nftTable} ${chain} ${f} saddr ${target.address} ${match} ${setMark} ${comment}`);
        lines.push(`add rule inet ${nftTable} ${chain} ${f} saddr ${loopback(family)} ${match} ${setMark} ${comment}`);
      }
      if (conf.masqAll) lines.push(`add rule inet ${nftTable} ${chain} ${match} ${setMark} ${comment}`);
      lines.push(`add rule inet ${nftTable} ${chain} ${match} dnat ${f} to ${dest}:${m.containerPort} ${comment}`);
      const entry = `fib daddr type local ${match}${conditions ? ` ${conditions}` : ''} jump ${chain} ${comment}`;
      lines.push(`add rule inet ${nftTable} prerouting ${entry}`, `add rule inet ${nftTable} output ${entry}`);
    }
  }
  return lines.join('\n') + '\n';
}
