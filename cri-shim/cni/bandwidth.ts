import { BerthError } from '../../lib/errors.js';

// The pod's bandwidth annotations as the CNI `bandwidth` capability (CNI CONVENTIONS.md): what
// kubelet's runtimes pass to a chained bandwidth plugin. The values are Kubernetes quantities in
// bits per second ("10M", "1Gi", "500k"), read and bounded as kubelet reads them.

export const ingressAnnotation = 'kubernetes.io/ingress-bandwidth';
export const egressAnnotation = 'kubernetes.io/egress-bandwidth';

/** runtimeConfig.bandwidth: rates in bits/s, buckets in bits. */
export interface BandwidthCapability {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

// Kubernetes quantity suffixes (k8s.io/apimachinery resource.Quantity): binary, decimal SI, or
// a decimal exponent (e3, E-2).
const binary: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const decimal: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** A quantity's value rounded up to an integer, as Quantity.Value(); undefined if it is not one. */
export function parseQuantity(text: string): number | undefined {
  const m = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$/.exec(text);
  if (!m) return undefined;
  const [, sign, digits, suffix] = m as unknown as [string, string, string, string];
  let scale = binary[suffix] ?? decimal[suffix];
  if (scale === undefined) {
    const exp = /^[eE]([+-]?\d+)$/.exec(suffix);
    if (!exp) return undefined;
    scale = 10 ** Number(exp[1]);
  }
  const value = Number(digits) * scale * (sign === '-' ? -1 : 1);
  if (!Number.isFinite(value)) return undefined;
  // Rounded up, as Value() does; the small tolerance keeps 1.1M at 1100000 despite floating point.
  const near = Math.round(value);
  return Math.abs(value - near) < 1e-6 * Math.max(1, Math.abs(value)) ? near : Math.ceil(value);
}

// kubelet's bounds: below 1 kbit/s or above 1 Pbit/s a limit is a mistake.
const minRate = 1e3;
const maxRate = 1e15;

function rateOf(annotations: Record<string, string>, key: string): number | undefined {
  const text = annotations[key];
  if (text === undefined) return undefined;
  const field = `config.annotations[${JSON.stringify(key)}]`;
  const rate = parseQuantity(text.trim());
  if (rate === undefined) throw new BerthError('invalid-argument', `${field}: ${JSON.stringify(text)} is not a quantity (bits per second, e.g. 10M)`);
  if (rate < minRate) throw new BerthError('invalid-argument', `${field}: ${text} is unreasonably small (< 1kbit/s)`);
  if (rate > maxRate) throw new BerthError('invalid-argument', `${field}: ${text} is unreasonably large (> 1Pbit/s)`);
  return rate;
}

/**
 * The bucket berth gives a rate. The annotations have no burst; containerd passes 4 Gbit, which
 * lets the first 512 MiB through unshaped. berth allows a fifth of a second at the rate, and at
 * least 64 KiB, so a TCP burst or a full-size GSO packet still fits.
 */
export function burstFor(rate: number): number {
  return Math.max(Math.ceil(rate / 5), 64 * 1024 * 8);
}

/** The capability from the pod's annotations; undefined when it has neither. Throws InvalidArgument naming a bad one. */
export function podBandwidth(annotations: Record<string, string> | undefined): BandwidthCapability | undefined {
  if (!annotations) return undefined;
  const ingress = rateOf(annotations, ingressAnnotation);
  const egress = rateOf(annotations, egressAnnotation);
  if (ingress === undefined && egress === undefined) return undefined;
  return {
    ...(ingress !== undefined ? { ingressRate: ingress, ingressBurst: burstFor(ingress) } : {}),
    ...(egress !== undefined ? { egressRate: egress, egressBurst: burstFor(egress) } : {}),
  };
}
