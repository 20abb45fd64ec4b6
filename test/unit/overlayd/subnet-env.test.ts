import { describe, expect, it } from 'vitest';
import { formatSubnetEnv, parseSubnetEnv } from '../../../overlayd/subnet-env.js';
import { errorOf } from './fixtures.js';

describe('subnet.env', () => {
  it('round-trips and names the bad key', () => {
    const env = { network: '10.244.0.0/16', subnet: '10.244.3.1/24', mtu: 1450, ipMasq: true };
    const text = formatSubnetEnv(env);
    expect(text).toBe('BERTH_NETWORK=10.244.0.0/16\nBERTH_SUBNET=10.244.3.1/24\nBERTH_MTU=1450\nBERTH_IPMASQ=true\n');
    expect(parseSubnetEnv(text, 'f')).toEqual(env);
    expect(errorOf(() => parseSubnetEnv('BERTH_NETWORK=10.244.0.0/16\nBERTH_SUBNET=10.244.3.1/24\nBERTH_MTU=big\n', '/run/x'))).toMatch(/^\/run\/x: BERTH_MTU/);
    expect(errorOf(() => parseSubnetEnv('BERTH_MTU=1450\n', '/run/x'))).toMatch(/neither BERTH_SUBNET/);
  });
});
