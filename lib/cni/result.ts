import { ipFamily, type Family } from '../ip.js';
import type { CniResult } from './types.js';

/**
 * The address families a previous result gives the container; both when it is unknown (no
 * prevResult on DEL), so a cleanup never skips a family it should have looked at.
 */
export function addressFamilies(result: CniResult | undefined): Family[] {
  if (!result?.ips?.length) return [4, 6];
  const found = new Set(result.ips.map((ip) => ipFamily(ip.address.split('/')[0]!)).filter((f): f is Family => f !== undefined));
  return found.size > 0 ? [...found].sort() : [4, 6];
}
