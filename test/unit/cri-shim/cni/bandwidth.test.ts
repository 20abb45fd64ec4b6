import { describe, expect, it } from 'vitest';
import { burstFor, parseQuantity, podBandwidth } from '../../../../cri-shim/cni/bandwidth.js';

describe('pod bandwidth annotations', () => {
  it('reads Kubernetes quantities as kubelet does, rounding up', () => {
    expect(parseQuantity('10M')).toBe(10_000_000);
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('500k')).toBe(500_000);
    expect(parseQuantity('1.5M')).toBe(1_500_000);
    expect(parseQuantity('1e6')).toBe(1_000_000);
    expect(parseQuantity('2500m')).toBe(3);
    expect(parseQuantity('100')).toBe(100);
    for (const bad of ['', 'M', '10 M', '10MB', 'ten', '1.2.3']) expect(parseQuantity(bad)).toBeUndefined();
  });

  it('gives each direction its rate and a bucket of a fifth of a second, at least 64 KiB', () => {
    expect(podBandwidth({ 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '1M' })).toEqual({
      ingressRate: 10_000_000, ingressBurst: 2_000_000, egressRate: 1_000_000, egressBurst: 524_288,
    });
    expect(burstFor(100e6)).toBe(20e6);
    expect(podBandwidth({ other: 'x' })).toBeUndefined();
    expect(podBandwidth(undefined)).toBeUndefined();
  });

  it('refuses a bad, too small or too large annotation with InvalidArgument naming it', () => {
    expect(() => podBandwidth({ 'kubernetes.io/ingress-bandwidth': 'fast' })).toThrow(expect.objectContaining({ kind: 'invalid-argument', message: expect.stringContaining('config.annotations["kubernetes.io/ingress-bandwidth"]: "fast" is not a quantity') }));
    expect(() => podBandwidth({ 'kubernetes.io/egress-bandwidth': '10' })).toThrow(/egress-bandwidth.*unreasonably small/);
    expect(() => podBandwidth({ 'kubernetes.io/egress-bandwidth': '2P' })).toThrow(/unreasonably large/);
    expect(() => podBandwidth({ 'kubernetes.io/egress-bandwidth': '-10M' })).toThrow(/unreasonably small/);
  });
});
