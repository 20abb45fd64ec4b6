import { describe, expect, it } from 'vitest';
import { iptablesMasqPresent, iptablesMasqRemove, iptablesMasqSetup, masqRules, nftMasqSetup } from '../../../overlayd/masq.js';

describe('masquerade rules', () => {
  const scope = { family: 4 as const, network: '10.244.0.0/16', subnet: '10.244.3.0/24' };

  it('keeps pod-to-pod and inbound-to-local traffic, masquerades the rest', () => {
    expect(masqRules(scope).map((r) => r.join(' '))).toEqual([
      '-s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN',
      '! -s 10.244.0.0/16 -d 10.244.3.0/24 -j RETURN',
      '-s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully',
      '! -s 10.244.0.0/16 -d 10.244.0.0/16 -j MASQUERADE --random-fully',
    ]);
    expect(iptablesMasqSetup(scope, true)).toContain('-I POSTROUTING 1 -m comment');
    expect(iptablesMasqSetup(scope, false)).not.toContain('POSTROUTING');
    expect(nftMasqSetup([scope])).toMatch(/delete table inet berth-overlay\ntable inet berth-overlay \{/);
  });

  it('finds and removes its chain in iptables-save output', () => {
    const saved = ['*nat', ':POSTROUTING ACCEPT [0:0]', ':BERTH-OVERLAY-MASQ - [0:0]', '-A POSTROUTING -m comment --comment "x" -j BERTH-OVERLAY-MASQ', ...masqRules(scope).map((r) => `-A BERTH-OVERLAY-MASQ ${r.join(' ')}`), 'COMMIT'].join('\n');
    expect(iptablesMasqPresent(saved, scope)).toEqual({ jump: true, chain: true });
    expect(iptablesMasqPresent(saved.replace(/-A BERTH-OVERLAY-MASQ -s.*RETURN\n/, ''), scope).chain).toBe(false);
    expect(iptablesMasqRemove(saved)).toBe('*nat\n-D POSTROUTING -m comment --comment "x" -j BERTH-OVERLAY-MASQ\n-F BERTH-OVERLAY-MASQ\n-X BERTH-OVERLAY-MASQ\nCOMMIT\n');
    expect(iptablesMasqRemove('*nat\nCOMMIT\n')).toBeUndefined();
  });
});
