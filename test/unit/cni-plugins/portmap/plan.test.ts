import { describe, expect, it } from 'vitest';
import {
  dnatChain,
  expectedDnat,
  iptablesPortmapRemove,
  iptablesPortmapSetup,
  nftPortmapSetup,
  parsePortmapComment,
  parsePortmapSave,
  portmapComment,
} from '../../../../cni-plugins/portmap/plan.js';
import { conf } from './fixtures.js';

const t4 = { network: 'pmnet', containerId: 'c1', ifname: 'eth0', address: '10.9.0.5' };
const t6 = { ...t4, address: 'fd00::5' };

describe('portmap iptables plan', () => {
  it('DNATs from PREROUTING and OUTPUT for local destinations, marks hairpin and localhost traffic', () => {
    const c = conf([{ hostPort: 30080, containerPort: 8080 }]);
    const chain = dnatChain(t4);
    const text = iptablesPortmapSetup(c, t4, 4, { masqJump: false })!;
    const comment = `-m comment --comment "${portmapComment(t4)}"`;
    expect(text.split('\n')).toEqual([
      '*nat',
      ':BERTH-HOSTPORT-SETMARK - [0:0]',
      '-A BERTH-HOSTPORT-SETMARK -j MARK --set-xmark 0x2000/0x2000',
      ':BERTH-HOSTPORT-MASQ - [0:0]',
      '-A BERTH-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
      '-A POSTROUTING -j BERTH-HOSTPORT-MASQ',
      `:${chain} - [0:0]`,
      `-A ${chain} -s 10.9.0.5/32 -p tcp --dport 30080 ${comment} -j BERTH-HOSTPORT-SETMARK`,
      `-A ${chain} -s 127.0.0.1/32 -p tcp --dport 30080 ${comment} -j BERTH-HOSTPORT-SETMARK`,
      `-A ${chain} -p tcp --dport 30080 ${comment} -j DNAT --to-destination 10.9.0.5:8080`,
      `-A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 30080 ${comment} -j ${chain}`,
      `-A OUTPUT -m addrtype --dst-type LOCAL -p tcp --dport 30080 ${comment} -j ${chain}`,
      'COMMIT',
      '',
    ]);
    expect(iptablesPortmapSetup(c, t4, 4, { masqJump: true })).not.toContain('-A POSTROUTING');
  });

  it('honours hostIP, snat off, masqAll, an external mark chain, conditions and IPv6 brackets', () => {
    const c = conf([{ hostPort: 443, containerPort: 8443, hostIP: 'fd00::1' }], { snat: false, masqAll: true, externalSetMarkChain: 'KUBE-MARK-MASQ', conditionsV6: ['! -s fd00:99::/64'] });
    const text = iptablesPortmapSetup(c, t6, 6, { masqJump: false })!;
    expect(text).not.toContain('BERTH-HOSTPORT-SETMARK');
    expect(text).not.toContain('-s ::1/128');
    expect(text).toContain('-d fd00::1/128 -p tcp --dport 443');
    expect(text).toContain('-j KUBE-MARK-MASQ');
    expect(text).toContain('--to-destination [fd00::5]:8443');
    expect(text).toContain('--dport 443 ! -s fd00:99::/64 -m comment');
    expect(iptablesPortmapSetup(c, t4, 4, { masqJump: false })).toBeUndefined();
  });

  it('reads its chains back from iptables-save and plans their removal and CHECK', () => {
    const c = conf([{ hostPort: 30080, containerPort: 8080 }]);
    const chain = dnatChain(t4);
    const applied = iptablesPortmapSetup(c, t4, 4, { masqJump: false })!;
    // iptables-save prints the same rules the restore input added.
    const saved = parsePortmapSave(applied.replace('*nat\n', `*nat\n:PREROUTING ACCEPT [0:0]\n`));
    expect(saved.masqJump).toBe(true);
    expect(saved.chains.get(chain)).toEqual({ network: 'pmnet', containerId: 'c1', ifname: 'eth0' });
    expect(saved.jumps.map((j) => j.from)).toEqual(['PREROUTING', 'OUTPUT']);
    expect(saved.dnat.get(chain)).toEqual(expectedDnat(c, t4, 4));
    const removal = iptablesPortmapRemove(saved, new Set([chain]))!;
    expect(removal).toContain(`-D PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 30080`);
    expect(removal).toContain(`-F ${chain}\n-X ${chain}`);
    expect(iptablesPortmapRemove(saved, new Set())).toBeUndefined();
    expect(parsePortmapComment(`--comment "${portmapComment(t4)}"`)).toEqual({ network: 'pmnet', containerId: 'c1', ifname: 'eth0' });
  });
});

describe('portmap nftables plan', () => {
  it('uses berth\'s inet table, rewrites the static masquerade chain and DNATs per family', () => {
    const c = conf([{ hostPort: 30080, containerPort: 8080, protocol: 'udp' }]);
    const script = nftPortmapSetup(c, [{ target: t4, family: 4 }, { target: t6, family: 6 }])!;
    expect(script).toContain('add table inet berth-portmap');
    expect(script).toContain('flush chain inet berth-portmap postrouting');
    expect(script).toContain('meta mark & 0x2000 == 0x2000 masquerade');
    expect(script).toContain('meta nfproto ipv4 udp dport 30080 dnat ip to 10.9.0.5:8080');
    expect(script).toContain('meta nfproto ipv6 udp dport 30080 dnat ip6 to [fd00::5]:8080');
    expect(script).toContain('fib daddr type local meta nfproto ipv4 udp dport 30080 jump berth-dn-');
    expect(nftPortmapSetup(conf([]), [{ target: t4, family: 4 }])).toBeUndefined();
  });
});
