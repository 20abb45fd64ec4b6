import { describe, expect, it } from 'vitest';
import {
  attachmentComment,
  iptablesMasqueradeSetup,
  iptablesRemoveChains,
  masqueradeChain,
  nftMacSpoofSetup,
  nftMasqueradeSetup,
  parseAttachmentComment,
  parseIptablesSave,
} from '../../../../cni-plugins/bridge/firewall-plan.js';
import { nftRemoveScript, parseNftRules } from '../../../../lib/netfilter.js';

const a = { network: 'mynet', containerId: 'c1', ifname: 'eth0' };

describe('bridge firewall plans', () => {
  it('names each attachment in a comment that parses back, quoted or not', () => {
    const c = attachmentComment(a);
    expect(parseAttachmentComment(c)).toEqual(a);
    expect(parseAttachmentComment(`-m comment --comment "${c}" -j ACCEPT`)).toEqual(a);
    expect(parseAttachmentComment('unrelated')).toBeUndefined();
  });

  it('uses a per-attachment chain name that iptables accepts (<= 28 characters)', () => {
    expect(masqueradeChain(a)).toMatch(/^BERTH-MASQ-[0-9a-f]{16}$/);
    expect(masqueradeChain(a).length).toBeLessThanOrEqual(28);
    expect(masqueradeChain({ ...a, ifname: 'eth1' })).not.toBe(masqueradeChain(a));
  });

  it('plans iptables masquerading per family: accept own subnet, masquerade the rest but multicast', () => {
    const chain = masqueradeChain(a);
    const v4 = iptablesMasqueradeSetup(a, ['10.1.0.5/24', 'fd00::5/64'], ['10.1.0.0/24', 'fd00::/64'], 4)!;
    expect(v4.split('\n')).toEqual([
      '*nat',
      `:${chain} - [0:0]`,
      `-A ${chain} -d 10.1.0.0/24 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ACCEPT`,
      `-A ${chain} ! -d 224.0.0.0/4 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j MASQUERADE`,
      `-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ${chain}`,
      'COMMIT',
      '',
    ]);
    const v6 = iptablesMasqueradeSetup(a, ['10.1.0.5/24', 'fd00::5/64'], ['10.1.0.0/24', 'fd00::/64'], 6)!;
    expect(v6).toContain('-d fd00::/64');
    expect(v6).toContain('! -d ff00::/8');
    expect(v6).toContain('-A POSTROUTING -s fd00::5/128');
    expect(iptablesMasqueradeSetup(a, ['10.1.0.5/24'], ['10.1.0.0/24'], 6)).toBeUndefined();
  });

  it('finds berth chains, their owners and the jumps to them in iptables-save output', () => {
    const chain = masqueradeChain(a);
    const save = [
      '*nat',
      ':POSTROUTING ACCEPT [0:0]',
      `:${chain} - [0:0]`,
      ':BERTH-MASQ-00000000000000ff - [0:0]',
      `-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ${chain}`,
      '-A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE',
      `-A ${chain} -d 10.1.0.0/24 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ACCEPT`,
      'COMMIT',
    ].join('\n');
    const saved = parseIptablesSave(save);
    expect(saved.chains.get(chain)).toEqual(a);
    expect(saved.chains.has('BERTH-MASQ-00000000000000ff')).toBe(true);
    expect(saved.jumps).toEqual([{ chain, rule: `-s 10.1.0.5/32 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ${chain}` }]);
    expect(iptablesRemoveChains(saved, new Set([chain]))?.split('\n')).toEqual([
      '*nat',
      `-D POSTROUTING -s 10.1.0.5/32 -m comment --comment "berth-bridge net=mynet id=c1 if=eth0" -j ${chain}`,
      `-F ${chain}`,
      `-X ${chain}`,
      'COMMIT',
      '',
    ]);
    expect(iptablesRemoveChains(saved, new Set())).toBeUndefined();
  });

  it('plans nftables masquerading in berth\'s own table, one rule per address', () => {
    const script = nftMasqueradeSetup(a, ['10.1.0.5/24', 'fd00::5/64'], ['10.1.0.0/24', 'fd00::/64'])!;
    expect(script).toContain('add table inet berth-bridge');
    expect(script).toContain('type nat hook postrouting priority srcnat');
    expect(script).toContain('ip saddr 10.1.0.5 ip daddr != 10.1.0.0/24 ip daddr != 224.0.0.0/4 masquerade comment "berth-bridge net=mynet id=c1 if=eth0"');
    expect(script).toContain('ip6 saddr fd00::5 ip6 daddr != fd00::/64 ip6 daddr != ff00::/8 masquerade');
  });

  it('plans the MAC spoof check as a per-attachment bridge chain and reads rules back from nft JSON', () => {
    const script = nftMacSpoofSetup(a, 'veth0123', '0a:58:00:00:00:01');
    expect(script).toContain('add table bridge berth-macspoof');
    expect(script).toContain('ether saddr 0a:58:00:00:00:01 return');
    expect(script).toContain('iifname "veth0123" jump mac-');
    const json = JSON.stringify({ nftables: [
      { metainfo: {} },
      { rule: { chain: 'prerouting', handle: 7, comment: attachmentComment(a), expr: [{ match: {} }, { jump: { target: 'mac-1' } }] } },
      { rule: { chain: 'mac-1', handle: 8, comment: attachmentComment(a), expr: [{ drop: null }] } },
    ] });
    const rules = parseNftRules(json);
    expect(rules).toEqual([
      { chain: 'prerouting', handle: 7, comment: attachmentComment(a), target: 'mac-1' },
      { chain: 'mac-1', handle: 8, comment: attachmentComment(a) },
    ]);
    expect(nftRemoveScript('bridge', 'berth-macspoof', [rules[0]!], ['mac-1'])).toBe(
      'delete rule bridge berth-macspoof prerouting handle 7\nflush chain bridge berth-macspoof mac-1\ndelete chain bridge berth-macspoof mac-1\n',
    );
    expect(nftRemoveScript('inet', 't', [], [])).toBeUndefined();
  });
});
