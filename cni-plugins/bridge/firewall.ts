import { accessSync, constants } from 'node:fs';
import { BerthError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import type { CniAttachment } from '../../lib/cni/types.js';
import type { Family } from '../../lib/ip.js';
import type { BridgeConfig, FirewallBackend } from './config.js';
import {
  attachmentComment,
  iptablesMasqueradeSetup,
  iptablesRemoveChains,
  macChain,
  masqueradeChain,
  nftMacSpoofSetup,
  nftMacTable,
  nftMasqTable,
  nftMasqueradeSetup,
  nftRemove,
  parseAttachmentComment,
  parseIptablesSave,
  parseNftRules,
  type Attachment,
  type NftRule,
} from './firewall-plan.js';

// Applies the plans of firewall-plan.ts: one iptables-restore or nft call per change, plus one
// read (iptables-save / nft -j list) where DEL, CHECK and GC must find what is there.

const searchPath = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function which(tool: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...searchPath]) {
    if (!dir) continue;
    try {
      accessSync(`${dir}/${tool}`, constants.X_OK);
      return `${dir}/${tool}`;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** Explicit config wins; otherwise iptables where it is installed, else nftables. */
export function chooseBackend(configured: FirewallBackend | undefined): FirewallBackend {
  if (configured) return configured;
  return which('iptables-restore') ? 'iptables' : 'nftables';
}

function requireTool(tool: string): string {
  const path = which(tool);
  if (!path) throw new BerthError('not-available', `${tool} is not installed (needed for the configured firewall backend)`);
  return path;
}

const families: Family[] = [4, 6];
const restoreTool = (f: Family) => (f === 4 ? 'iptables-restore' : 'ip6tables-restore');
const saveTool = (f: Family) => (f === 4 ? 'iptables-save' : 'ip6tables-save');

async function iptablesRestore(family: Family, input: string): Promise<void> {
  await run(requireTool(restoreTool(family)), ['--noflush', '-w', '5'], { input });
}

async function iptablesSave(family: Family): Promise<string> {
  const tool = which(saveTool(family));
  if (!tool) return '';
  return (await run(tool, ['-t', 'nat'], { allowFailure: true })).stdout;
}

async function nft(script: string): Promise<void> {
  await run(requireTool('nft'), ['-f', '-'], { input: script });
}

/** Rules of a berth nft table, or none if the table does not exist. */
async function nftRules(family: string, table: string): Promise<NftRule[]> {
  const tool = which('nft');
  if (!tool) return [];
  const out = await run(tool, ['-j', '-a', 'list', 'table', family, table], { allowFailure: true });
  if (out.code !== 0) return [];
  return parseNftRules(out.stdout);
}

function isValid(owner: Attachment | undefined, network: string, valid: CniAttachment[]): boolean {
  if (!owner || owner.network !== network) return true;
  return valid.some((v) => v.containerID === owner.containerId && v.ifname === owner.ifname);
}

export function firewall(conf: BridgeConfig) {
  const backend = chooseBackend(conf.ipMasqBackend);
  const attachment = (containerId: string, ifname: string): Attachment => ({ network: conf.network, containerId, ifname });

  async function removeMasquerade(select: (chain: string, owner: Attachment | undefined) => boolean, backends: FirewallBackend[]): Promise<void> {
    if (backends.includes('iptables')) {
      await Promise.all(families.map(async (family) => {
        const saved = parseIptablesSave(await iptablesSave(family));
        const remove = new Set([...saved.chains].filter(([chain, owner]) => select(chain, owner)).map(([c]) => c));
        const input = iptablesRemoveChains(saved, remove);
        if (input) await iptablesRestore(family, input);
      }));
    }
    if (!backends.includes('nftables')) return;
    const rules = (await nftRules('inet', nftMasqTable)).filter((r) => {
      const owner = r.comment ? parseAttachmentComment(r.comment) : undefined;
      return owner !== undefined && select('', owner);
    });
    const script = nftRemove('inet', nftMasqTable, rules, []);
    if (script) await nft(script);
  }

  async function removeMacSpoof(select: (owner: Attachment) => boolean): Promise<void> {
    const rules = (await nftRules('bridge', nftMacTable)).filter((r) => {
      const owner = r.comment ? parseAttachmentComment(r.comment) : undefined;
      return owner !== undefined && select(owner);
    });
    const chains = [...new Set(rules.map((r) => r.target).filter((t): t is string => t !== undefined))];
    const script = nftRemove('bridge', nftMacTable, rules.filter((r) => r.target !== undefined), chains);
    if (script) await nft(script);
  }

  return {
    backend,

    async setupMasquerade(containerId: string, ifname: string, addresses: string[], subnets: string[]): Promise<void> {
      const a = attachment(containerId, ifname);
      if (backend === 'nftables') {
        const script = nftMasqueradeSetup(a, addresses, subnets);
        if (script) await nft(script);
        return;
      }
      for (const family of families) {
        const input = iptablesMasqueradeSetup(a, addresses, subnets, family);
        if (input) await iptablesRestore(family, input);
      }
    },

    async teardownMasquerade(containerId: string, ifname: string): Promise<void> {
      const a = attachment(containerId, ifname);
      const chain = masqueradeChain(a);
      const comment = attachmentComment(a);
      await removeMasquerade((c, owner) => c === chain || (owner !== undefined && attachmentComment(owner) === comment), [backend]);
    },

    async checkMasquerade(containerId: string, ifname: string): Promise<void> {
      const a = attachment(containerId, ifname);
      if (backend === 'nftables') {
        const comment = attachmentComment(a);
        if (!(await nftRules('inet', nftMasqTable)).some((r) => r.comment === comment)) {
          throw new BerthError('failed-precondition', `masquerade rules of ${containerId}/${ifname} are missing from nft table inet ${nftMasqTable}`);
        }
        return;
      }
      const chain = masqueradeChain(a);
      const found = await Promise.all(families.map(async (f) => parseIptablesSave(await iptablesSave(f))));
      if (!found.some((s) => s.chains.has(chain) && s.jumps.some((j) => j.chain === chain))) {
        throw new BerthError('failed-precondition', `masquerade chain ${chain} of ${containerId}/${ifname} or its POSTROUTING jump is missing`);
      }
    },

    async gcMasquerade(valid: CniAttachment[]): Promise<void> {
      // Both backends: the configured one may have changed since the ADDs.
      await removeMasquerade((_chain, owner) => !isValid(owner, conf.network, valid), ['iptables', 'nftables']);
    },

    async setupMacSpoofCheck(containerId: string, ifname: string, hostVeth: string, mac: string): Promise<void> {
      await nft(nftMacSpoofSetup(attachment(containerId, ifname), hostVeth, mac));
    },

    async teardownMacSpoofCheck(containerId: string, ifname: string): Promise<void> {
      const chain = macChain(attachment(containerId, ifname));
      await removeMacSpoof((owner) => macChain(owner) === chain);
    },

    async gcMacSpoofCheck(valid: CniAttachment[]): Promise<void> {
      await removeMacSpoof((owner) => !isValid(owner, conf.network, valid));
    },

    /** STATUS: the tools the configured features need are installed. */
    async status(): Promise<void> {
      if (conf.ipMasq) {
        if (backend === 'iptables') requireTool('iptables-restore');
        else requireTool('nft');
      }
      if (conf.macSpoofCheck) requireTool('nft');
    },
  };
}
