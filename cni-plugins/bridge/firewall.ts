import { BerthError } from '../../lib/errors.js';
import { netfilter, nftRemoveScript, type FirewallBackend } from '../../lib/netfilter.js';
import type { CniAttachment } from '../../lib/cni/types.js';
import type { Family } from '../../lib/ip.js';
import type { BridgeConfig } from './config.js';
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
  parseAttachmentComment,
  parseIptablesSave,
  type Attachment,
} from './firewall-plan.js';

// Applies the plans of firewall-plan.ts through lib/netfilter.ts: one iptables-restore or nft
// call per change, plus one read where DEL, CHECK and GC must find what is there.

const families: Family[] = [4, 6];

function isValid(owner: Attachment | undefined, network: string, valid: CniAttachment[]): boolean {
  if (!owner || owner.network !== network) return true;
  return valid.some((v) => v.containerID === owner.containerId && v.ifname === owner.ifname);
}

/** The bridge's firewall operations, run with the request's environment. */
export function firewall(conf: BridgeConfig, env: NodeJS.ProcessEnv) {
  const { chooseBackend, iptablesRestore, iptablesSave, nftApply, nftListRules, requireBackend, requireTool } = netfilter(env);
  const backend = chooseBackend(conf.ipMasqBackend);
  const attachment = (containerId: string, ifname: string): Attachment => ({ network: conf.network, containerId, ifname });

  async function removeMasquerade(
    select: (chain: string, owner: Attachment | undefined) => boolean,
    backends: FirewallBackend[],
    inFamilies: Family[] = families,
  ): Promise<void> {
    if (backends.includes('iptables')) {
      await Promise.all(inFamilies.map(async (family) => {
        const saved = parseIptablesSave(await iptablesSave(family));
        const remove = new Set([...saved.chains].filter(([chain, owner]) => select(chain, owner)).map(([c]) => c));
        const input = iptablesRemoveChains(saved, remove);
        if (input) await iptablesRestore(family, input);
      }));
    }
    if (!backends.includes('nftables')) return;
    const rules = (await nftListRules('inet', nftMasqTable)).filter((r) => {
      const owner = r.comment ? parseAttachmentComment(r.comment) : undefined;
      return owner !== undefined && select('', owner);
    });
    const script = nftRemoveScript('inet', nftMasqTable, rules, []);
    if (script) await nftApply(script);
  }

  async function removeMacSpoof(select: (owner: Attachment) => boolean): Promise<void> {
    const rules = (await nftListRules('bridge', nftMacTable)).filter((r) => {
      const owner = r.comment ? parseAttachmentComment(r.comment) : undefined;
      return owner !== undefined && select(owner);
    });
    const chains = [...new Set(rules.map((r) => r.target).filter((t): t is string => t !== undefined))];
    const script = nftRemoveScript('bridge', nftMacTable, rules.filter((r) => r.target !== undefined), chains);
    if (script) await nftApply(script);
  }

  return {
    backend,

    async setupMasquerade(containerId: string, ifname: string, addresses: string[], subnets: string[]): Promise<void> {
      const a = attachment(containerId, ifname);
      if (backend === 'nftables') {
        const script = nftMasqueradeSetup(a, addresses, subnets);
        if (script) await nftApply(script);
        return;
      }
      for (const family of families) {
        const input = iptablesMasqueradeSetup(a, addresses, subnets, family);
        if (input) await iptablesRestore(family, input);
      }
    },

    /** `inFamilies`: the families the pod had addresses of, when known (saves a save/restore). */
    async teardownMasquerade(containerId: string, ifname: string, inFamilies: Family[] = families): Promise<void> {
      const a = attachment(containerId, ifname);
      const chain = masqueradeChain(a);
      const comment = attachmentComment(a);
      await removeMasquerade((c, owner) => c === chain || (owner !== undefined && attachmentComment(owner) === comment), [backend], inFamilies);
    },

    async checkMasquerade(containerId: string, ifname: string): Promise<void> {
      const a = attachment(containerId, ifname);
      if (backend === 'nftables') {
        const comment = attachmentComment(a);
        if (!(await nftListRules('inet', nftMasqTable)).some((r) => r.comment === comment)) {
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
      await nftApply(nftMacSpoofSetup(attachment(containerId, ifname), hostVeth, mac));
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
      if (conf.ipMasq) requireBackend(backend);
      if (conf.macSpoofCheck) requireTool('nft');
    },
  };
}
