import { describe, expect, it } from 'vitest';
import { mappingsFor } from '../../../../cni-plugins/portmap/config.js';
import { markOf } from '../../../../cni-plugins/portmap/plan.js';
import { conf } from './fixtures.js';

describe('portmap config', () => {
  it('has the reference defaults: snat on, masqAll off, mark bit 13, tcp', () => {
    const c = conf([{ hostPort: 80, containerPort: 8080 }]);
    expect(c).toMatchObject({ snat: true, masqAll: false, markMasqBit: 13, mappings: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp', hostIP: undefined }] });
    expect(markOf(c)).toBe('0x2000');
  });

  it('accepts upper-case protocols and splits mappings by host address family', () => {
    const c = conf([{ hostPort: 53, containerPort: 53, protocol: 'UDP' }, { hostPort: 80, containerPort: 80, hostIP: 'fd00::1' }]);
    expect(c.mappings[0]?.protocol).toBe('udp');
    expect(mappingsFor(c.mappings, 4)).toHaveLength(1);
    expect(mappingsFor(c.mappings, 6)).toHaveLength(2);
  });

  it('rejects what is not a single match expression in conditions, and bad chain names', () => {
    expect(() => conf([], { conditionsV4: ['-s 1.2.3.4\n-A INPUT -j ACCEPT'] })).toThrow(/conditionsV4\[0\]/);
    expect(() => conf([], { externalSetMarkChain: 'bad chain' })).toThrow(/externalSetMarkChain/);
    expect(() => conf([], { markMasqBit: 40 })).toThrow(/markMasqBit/);
  });
});
