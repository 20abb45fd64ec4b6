import { BerthError } from '../../lib/errors.js';
import type { CniCommand } from '../../lib/cni/types.js';
import { isObject, optBool, optInt, optObject, optString, type Json } from '../../lib/cni/validate.js';

// berth-tuning configuration: the reference tuning plugin's fields
// (cni.dev/plugins/current/meta/tuning): sysctl, mac, mtu, promisc, allmulti, txQLen, dataDir,
// and the runtime's `mac` capability (runtimeConfig.mac); CNI_ARGS MAC= and args.cni.mac set the
// MAC too (see macOf for which wins).

export interface TuningConfig {
  network: string;
  /** Sysctls as given (keys may name the interface as IFNAME); sysctlKeyPath resolves them. */
  sysctl: { key: string; value: string }[];
  /** The config's mac (args.cni.mac over mac). */
  mac: string | undefined;
  /** The runtime's mac capability: wins over everything else. */
  runtimeMac: string | undefined;
  mtu: number | undefined;
  promisc: boolean | undefined;
  allmulti: boolean | undefined;
  txQLen: number | undefined;
  /** Where the interface's settings before ADD are kept for DEL to restore. */
  dataDir: string;
}

/** The MAC to set, as the reference picks it: runtimeConfig.mac, else CNI_ARGS MAC=, else the config's. */
export function macOf(conf: TuningConfig, cniArgs: Map<string, string>): string | undefined {
  if (conf.runtimeMac) return conf.runtimeMac;
  const arg = cniArgs.get('MAC');
  return arg ? parseMac(arg, 'CNI_ARGS MAC') : conf.mac;
}

export const defaultDataDir = '/run/berth/cni/tuning';

/**
 * A sysctl key as a path under /proc/sys: "net.ipv4.conf.eth0.rp_filter" (dots) or, as
 * sysctl(8) allows for names holding a dot (VLAN devices), "net/ipv4/conf/eth0.100/rp_filter".
 * Only the network subsystem is accepted, and nothing that could climb out of it.
 */
export function sysctlKeyPath(key: string, ifname: string | undefined): string {
  const field = `sysctl[${JSON.stringify(key)}]`;
  // The reference lets a key name the pod's interface without knowing it: IFNAME.
  const named = ifname === undefined ? key : key.replace(/(^|[./])IFNAME(?=$|[./])/g, `$1${ifname}`);
  const segments = named.includes('/') ? named.split('/') : named.split('.');
  if (segments.some((s) => s === '' || s === '.' || s === '..' || /[\0\s]/.test(s))) {
    throw new BerthError('invalid-config', `${field}: not a valid sysctl name (empty, '.' or '..' segments, or white space)`);
  }
  if (segments[0] !== 'net' || segments.length < 2) {
    throw new BerthError('invalid-config', `${field}: only network sysctls (net.*) can be set for a pod's interface`);
  }
  return segments.join('/');
}

export function parseMac(value: string, field: string): string {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(value)) throw new BerthError('invalid-config', `${field}: ${JSON.stringify(value)} is not a MAC address (xx:xx:xx:xx:xx:xx)`);
  // A multicast address (low bit of the first byte) cannot be a unicast interface's address.
  if (parseInt(value.slice(0, 2), 16) & 1) throw new BerthError('invalid-config', `${field}: ${value} is a multicast address`);
  return value.toLowerCase();
}

export function parseTuningConfig(raw: Json, _command: CniCommand): TuningConfig {
  const sysctlRaw = optObject(raw, 'sysctl', '') ?? {};
  const sysctl = Object.entries(sysctlRaw).map(([key, value]) => {
    if (typeof value !== 'string') throw new BerthError('invalid-config', `sysctl[${JSON.stringify(key)}]: expected a string value, got ${JSON.stringify(value)}`);
    if (/[\n\0]/.test(value)) throw new BerthError('invalid-config', `sysctl[${JSON.stringify(key)}]: the value may not hold a new line`);
    sysctlKeyPath(key, 'eth0'); // refused here, before anything is touched
    return { key, value };
  });
  const runtime = optObject(raw, 'runtimeConfig', '') ?? {};
  const runtimeMac = optString(runtime, 'mac', 'runtimeConfig.') || undefined;
  const args = isObject(raw.args) && isObject(raw.args.cni) ? raw.args.cni : undefined;
  const argsMac = args && typeof args.mac === 'string' ? args.mac : undefined;
  const staticMac = optString(raw, 'mac', '') || undefined;
  return {
    network: raw.name as string,
    sysctl,
    mac: argsMac ? parseMac(argsMac, 'args.cni.mac') : staticMac && parseMac(staticMac, 'mac'),
    runtimeMac: runtimeMac && parseMac(runtimeMac, 'runtimeConfig.mac'),
    mtu: optInt(raw, 'mtu', '', 68, 65535),
    promisc: optBool(raw, 'promisc', ''),
    allmulti: optBool(raw, 'allmulti', ''),
    txQLen: optInt(raw, 'txQLen', '', 0, 0x7fffffff),
    dataDir: optString(raw, 'dataDir', '') || defaultDataDir,
  };
}
