import { BerthError } from '../errors.js';
import type { CniInterface, CniIpConfig, CniResult, CniRoute } from './types.js';

// Spec versions berth speaks, and conversion of results between them.
// 0.3.x/0.4.0 carry `version` ("4"/"6") on each IP; 1.0.0 dropped it; 1.1.0 added interface
// mtu/socketPath/pciID and route mtu/advmss/priority/table/scope.

export const supportedVersions = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const latestVersion = '1.1.0';

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isSupportedVersion(v: unknown): v is string {
  return typeof v === 'string' && (supportedVersions as readonly string[]).includes(v);
}

export function requireSupportedVersion(v: unknown, what = 'cniVersion'): string {
  if (v === undefined) throw new BerthError('invalid-config', `${what}: required field is missing`);
  if (!isSupportedVersion(v)) {
    throw new BerthError(
      'incompatible-version',
      `incompatible CNI versions: ${what} is ${JSON.stringify(v)}, berth supports ${supportedVersions.join(', ')}`,
    );
  }
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Read a result of any supported version (e.g. a prevResult) into the internal 1.1.0 shape. */
export function parseResult(raw: unknown, field = 'prevResult'): CniResult {
  if (!isObject(raw)) throw new BerthError('decode', `${field}: expected an object`);
  const version = typeof raw.cniVersion === 'string' ? raw.cniVersion : undefined;
  if (version !== undefined && !isSupportedVersion(version)) {
    throw new BerthError('incompatible-version', `${field}.cniVersion ${JSON.stringify(version)} is not supported`);
  }
  const result: CniResult = { cniVersion: latestVersion };
  if (raw.interfaces !== undefined) {
    if (!Array.isArray(raw.interfaces)) throw new BerthError('decode', `${field}.interfaces: expected an array`);
    result.interfaces = raw.interfaces.map((i, n) => {
      if (!isObject(i) || typeof i.name !== 'string') throw new BerthError('decode', `${field}.interfaces[${n}].name: expected a string`);
      return { ...i } as unknown as CniInterface;
    });
  }
  if (raw.ips !== undefined) {
    if (!Array.isArray(raw.ips)) throw new BerthError('decode', `${field}.ips: expected an array`);
    result.ips = raw.ips.map((ip, n) => {
      if (!isObject(ip) || typeof ip.address !== 'string') throw new BerthError('decode', `${field}.ips[${n}].address: expected a string`);
      const copy = { ...ip };
      delete copy.version;
      return copy as unknown as CniIpConfig;
    });
  }
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) throw new BerthError('decode', `${field}.routes: expected an array`);
    result.routes = raw.routes.map((r, n) => {
      if (!isObject(r) || typeof r.dst !== 'string') throw new BerthError('decode', `${field}.routes[${n}].dst: expected a string`);
      return { ...r } as unknown as CniRoute;
    });
  }
  if (raw.dns !== undefined) {
    if (!isObject(raw.dns)) throw new BerthError('decode', `${field}.dns: expected an object`);
    result.dns = { ...raw.dns };
  }
  return result;
}

const newInterfaceKeys = ['mtu', 'socketPath', 'pciID'] as const;
const newRouteKeys = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

/** Render an internal result for the version the runtime asked for. */
export function convertResult(result: CniResult, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  const before11 = compareVersions(version, '1.1.0') < 0;
  const before10 = compareVersions(version, '1.0.0') < 0;
  if (result.interfaces) {
    out.interfaces = result.interfaces.map((i) => {
      const copy: Record<string, unknown> = { ...i };
      if (before11) for (const k of newInterfaceKeys) delete copy[k];
      return copy;
    });
  }
  if (result.ips) {
    out.ips = result.ips.map((ip) => {
      if (!before10) return { ...ip };
      return { version: ip.address.includes(':') ? '6' : '4', ...ip };
    });
  }
  if (result.routes) {
    out.routes = result.routes.map((r) => {
      const copy: Record<string, unknown> = { ...r };
      if (before11) for (const k of newRouteKeys) delete copy[k];
      return copy;
    });
  }
  out.dns = result.dns ?? {};
  return out;
}
