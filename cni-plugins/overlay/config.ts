import { isAbsolute } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import type { CniCommand } from '../../lib/cni/types.js';
import { isObject, optArray, optObject, optString, type Json } from '../../lib/cni/validate.js';

// berth-overlay configuration: flannel's CNI plugin fields (subnetFile, dataDir, delegate, ipam)
// with berth's names for the delegated plugins. Everything about the node's subnet comes from the
// overlay daemon's subnet file, not from here.

export const defaultSubnetFile = '/run/berth/subnet.env';
export const defaultDataDir = '/var/lib/cni/berth-overlay';
export const defaultDelegateType = 'berth-bridge';
export const defaultIpamType = 'berth-host-local';

export interface OverlayConfig {
  cniVersion: string;
  network: string;
  subnetFile: string;
  /** Where the generated delegate config of each container is saved, one file per container ID. */
  dataDir: string;
  /** Fields that override the generated delegate config (bridge name, hairpinMode, ...). */
  delegate: Json;
  /** Extra IPAM fields (type, dataDir, routes, ...); ranges always come from the subnet file. */
  ipam: Json;
  /** Passed to the delegate unchanged, as flannel does. */
  runtimeConfig: Json | undefined;
  capabilities: Json | undefined;
  args: Json | undefined;
}

// Keys a runtime may put in any plugin's config (spec "Network configuration"), plus ours.
const knownKeys = new Set([
  'cniVersion', 'name', 'type', 'subnetFile', 'dataDir', 'delegate', 'ipam',
  'runtimeConfig', 'capabilities', 'args', 'prevResult',
]);

// Set by berth-overlay itself: the delegate joins the same network at the same version, and its
// address ranges are the node's subnet.
const delegateOwnedKeys = ['name', 'cniVersion', 'ipam'] as const;
const ipamOwnedKeys = ['ranges', 'subnet', 'rangeStart', 'rangeEnd', 'gateway'] as const;

function pluginName(obj: Json, key: string, path: string, fallback: string): string {
  const v = optString(obj, key, path) || fallback;
  if (v.includes('/') || v === '.' || v === '..') {
    throw new BerthError('invalid-config', `${path}${key}: ${JSON.stringify(v)} must be a plugin name, not a path`);
  }
  return v;
}

function absolutePath(raw: Json, key: string, fallback: string): string {
  const v = optString(raw, key, '') || fallback;
  if (!isAbsolute(v)) throw new BerthError('invalid-config', `${key}: expected an absolute path, got ${JSON.stringify(v)}`);
  return v;
}

function parseDelegate(raw: Json): Json {
  const delegate = { ...(optObject(raw, 'delegate', '') ?? {}) };
  for (const key of delegateOwnedKeys) {
    if (delegate[key] !== undefined) {
      const hint = key === 'ipam' ? 'put IPAM options in the top-level "ipam"' : 'berth-overlay sets it';
      throw new BerthError('invalid-config', `delegate.${key}: ${JSON.stringify(delegate[key])} cannot be overridden (${hint})`);
    }
  }
  delegate.type = pluginName(delegate, 'type', 'delegate.', defaultDelegateType);
  return delegate;
}

function parseIpam(raw: Json): Json {
  const ipam = { ...(optObject(raw, 'ipam', '') ?? {}) };
  for (const key of ipamOwnedKeys) {
    if (ipam[key] !== undefined) {
      throw new BerthError('invalid-config', `ipam.${key}: ${JSON.stringify(ipam[key])} cannot be set, the node's subnet comes from the subnet file`);
    }
  }
  ipam.type = pluginName(ipam, 'type', 'ipam.', defaultIpamType);
  const routes = optArray(ipam, 'routes', 'ipam.');
  routes?.forEach((r, i) => {
    if (!isObject(r) || typeof r.dst !== 'string') throw new BerthError('invalid-config', `ipam.routes[${i}]: expected {"dst": CIDR}, got ${JSON.stringify(r)}`);
  });
  return ipam;
}

export function parseOverlayConfig(raw: Json, _command: CniCommand): OverlayConfig {
  for (const key of Object.keys(raw)) {
    if (knownKeys.has(key) || key.startsWith('cni.dev/')) continue;
    throw new BerthError('unsupported-field', `${key}: ${JSON.stringify(raw[key])} is not a berth-overlay field (options of the delegated plugin go in "delegate")`);
  }
  return {
    cniVersion: raw.cniVersion as string,
    network: raw.name as string,
    subnetFile: absolutePath(raw, 'subnetFile', defaultSubnetFile),
    dataDir: absolutePath(raw, 'dataDir', defaultDataDir),
    delegate: parseDelegate(raw),
    ipam: parseIpam(raw),
    runtimeConfig: optObject(raw, 'runtimeConfig', ''),
    capabilities: optObject(raw, 'capabilities', ''),
    args: optObject(raw, 'args', ''),
  };
}
