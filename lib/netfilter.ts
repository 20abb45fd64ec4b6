import { accessSync, constants } from 'node:fs';
import { BerthError } from './errors.js';
import { run } from './exec.js';
import type { Family } from './ip.js';

// Applying firewall state in ONE call per change: `iptables-restore --noflush` (or
// ip6tables-restore) with a generated batch, or `nft -f -` with a generated script, plus the
// reads that DEL/CHECK/GC need (iptables-save, nft -j list). Planning the text is the callers'
// job (pure functions); this module only runs the tools. nftables needs no iptables binary.

export type FirewallBackend = 'iptables' | 'nftables';

const searchPath = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

export interface Netfilter {
  which(tool: string): string | undefined;
  requireTool(tool: string): string;
  /** Explicit config wins; otherwise iptables where it is installed, else nftables. */
  chooseBackend(configured: FirewallBackend | undefined): FirewallBackend;
  /** STATUS helper: the backend's tool is installed. */
  requireBackend(backend: FirewallBackend): void;
  iptablesRestore(family: Family, input: string): Promise<void>;
  /** `iptables-save -t TABLE`, or '' where the tool is missing. */
  iptablesSave(family: Family, table?: string): Promise<string>;
  nftApply(script: string): Promise<void>;
  /** Rules of a table, or none if the table (or nft) does not exist. */
  nftListRules(family: string, table: string): Promise<NftRule[]>;
}

/**
 * The tools, found and run with the caller's environment (a CNI request's PATH, not the process's:
 * berth-cnid serves requests of callers whose environment may differ from its own).
 */
export function netfilter(env: NodeJS.ProcessEnv): Netfilter {
  const which = (tool: string): string | undefined => {
    for (const dir of [...(env.PATH ?? '').split(':'), ...searchPath]) {
      if (!dir) continue;
      try {
        accessSync(`${dir}/${tool}`, constants.X_OK);
        return `${dir}/${tool}`;
      } catch {
        // keep looking
      }
    }
    return undefined;
  };
  const requireTool = (tool: string): string => {
    const path = which(tool);
    if (!path) throw new BerthError('not-available', `${tool} is not installed (needed for the configured firewall backend)`);
    return path;
  };
  return {
    which,
    requireTool,
    chooseBackend: (configured) => configured ?? (which('iptables-restore') ? 'iptables' : 'nftables'),
    requireBackend: (backend) => void requireTool(backend === 'iptables' ? 'iptables-restore' : 'nft'),
    async iptablesRestore(family, input) {
      // -w: wait for the xtables lock instead of failing when another writer holds it.
      await run(requireTool(family === 4 ? 'iptables-restore' : 'ip6tables-restore'), ['--noflush', '-w', '5'], { input, env });
    },
    async iptablesSave(family, table = 'nat') {
      const tool = which(family === 4 ? 'iptables-save' : 'ip6tables-save');
      if (!tool) return '';
      return (await run(tool, ['-t', table], { allowFailure: true, env })).stdout;
    },
    async nftApply(script) {
      await run(requireTool('nft'), ['-f', '-'], { input: script, env });
    },
    async nftListRules(family, table) {
      const tool = which('nft');
      if (!tool) return [];
      const out = await run(tool, ['-j', '-a', 'list', 'table', family, table], { allowFailure: true, env });
      if (out.code !== 0) return [];
      return parseNftRules(out.stdout);
    },
  };
}

export interface NftRule {
  chain: string;
  handle: number;
  comment: string | undefined;
  /** For a jump/goto rule, the target chain. */
  target?: string;
}

/** Rules of `nft -j -a list table ...` output. */
export function parseNftRules(json: string): NftRule[] {
  const out: NftRule[] = [];
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  for (const item of doc.nftables ?? []) {
    const rule = item.rule as { chain: string; handle: number; comment?: string; expr?: Record<string, unknown>[] } | undefined;
    if (!rule) continue;
    const verdict = rule.expr?.find((e) => 'jump' in e || 'goto' in e) as { jump?: { target: string }; goto?: { target: string } } | undefined;
    const target = verdict?.jump?.target ?? verdict?.goto?.target;
    out.push({ chain: rule.chain, handle: rule.handle, comment: rule.comment, ...(target ? { target } : {}) });
  }
  return out;
}

/** nft script that deletes the listed rules (by handle), then flushes and deletes the chains. */
export function nftRemoveScript(family: string, table: string, rules: NftRule[], chains: string[]): string | undefined {
  if (rules.length === 0 && chains.length === 0) return undefined;
  const lines = rules.map((r) => `delete rule ${family} ${table} ${r.chain} handle ${r.handle}`);
  for (const c of chains) lines.push(`flush chain ${family} ${table} ${c}`, `delete chain ${family} ${table} ${c}`);
  return lines.join('\n') + '\n';
}
