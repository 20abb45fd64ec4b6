import { join } from 'node:path';
import type { CniAttachment } from '../../lib/cni/types.js';
import type { Json } from '../../lib/cni/validate.js';
import { networkCidr, parseCidr } from '../../lib/ip.js';
import type { SubnetEnv } from '../../overlayd/subnet-env.js';
import { defaultDelegateType, type OverlayConfig } from './config.js';

// What berth-overlay asks of its delegate, as plain data: the bridge config for this node's
// subnet (flannel's generated config), where it is saved, and which saved configs GC drops.

const bridgeTypes = new Set([defaultDelegateType, 'bridge']);

/** "10.244.3.1/24" (the gateway address overlayd writes) -> "10.244.3.0/24". */
export function subnetNetwork(subnet: string, field: string): string {
  return networkCidr(parseCidr(subnet, field));
}

function ipamFor(conf: OverlayConfig, env: SubnetEnv): Json {
  const ranges: Json[][] = [];
  const routes: unknown[] = [...((conf.ipam.routes as unknown[] | undefined) ?? [])];
  if (env.subnet) {
    ranges.push([{ subnet: subnetNetwork(env.subnet, 'BERTH_SUBNET') }]);
    routes.push({ dst: env.network });
  }
  if (env.ipv6Subnet) {
    ranges.push([{ subnet: subnetNetwork(env.ipv6Subnet, 'BERTH_IPV6_SUBNET') }]);
    routes.push({ dst: env.ipv6Network });
  }
  return { ...conf.ipam, ranges, routes };
}

/**
 * The delegate's network config. `delegate` fields win over the generated ones; name, cniVersion
 * and ipam are always berth-overlay's. Bridge-only defaults are left out for other delegate types.
 */
export function delegateConfig(conf: OverlayConfig, env: SubnetEnv): Json {
  const type = conf.delegate.type as string;
  // Never the bridge's masquerade: it would NAT pod-to-pod traffic to other nodes too (flannel's
  // behaviour without --ip-masq). Masquerading traffic that leaves the cluster network is
  // overlayd's job (--ip-masq), which keeps pod-to-pod addresses end to end.
  const generated: Json = { type, ipMasq: false, mtu: env.mtu };
  // The bridge is the pods' default gateway (kube-flannel's default too): traffic leaving the
  // cluster network goes through the node, where --ip-masq masquerades it.
  if (bridgeTypes.has(type)) Object.assign(generated, { bridge: 'cni0', isGateway: true, isDefaultGateway: true, hairpinMode: true });
  const out: Json = { cniVersion: conf.cniVersion, name: conf.network, ...generated, ...conf.delegate, ipam: ipamFor(conf, env) };
  out.cniVersion = conf.cniVersion;
  out.name = conf.network;
  if (conf.runtimeConfig) out.runtimeConfig = conf.runtimeConfig;
  if (conf.capabilities) out.capabilities = conf.capabilities;
  if (conf.args) out.args = conf.args;
  return out;
}

/** One saved delegate config per container, as flannel keeps them. */
export function savedConfigPath(dataDir: string, containerId: string): string {
  return join(dataDir, containerId);
}

const containerIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * The names in dataDir that are saved configs. Names that cannot be a container ID (temp files of
 * an interrupted atomic write start with '.') are not ours to judge.
 */
export function savedContainerIds(names: readonly string[]): string[] {
  return names.filter((name) => containerIdPattern.test(name));
}

/** Saved configs whose container is not among the valid attachments. */
export function staleSavedConfigs(saved: readonly string[], valid: readonly CniAttachment[]): string[] {
  const keep = new Set(valid.map((a) => a.containerID));
  return savedContainerIds(saved).filter((id) => !keep.has(id));
}

/**
 * The distinct delegate configs GC must be forwarded with (the current one and the saved ones,
 * which may predate a subnet change), at the GC request's version.
 */
export function gcDelegateConfigs(configs: readonly Json[], cniVersion: string): Json[] {
  const seen = new Map<string, Json>();
  for (const c of configs) {
    // Per-attachment fields say nothing about what GC should look at.
    const { prevResult: _p, runtimeConfig: _r, args: _a, capabilities: _c, ...rest } = c;
    const conf = { ...rest, cniVersion };
    const key = JSON.stringify(conf);
    if (!seen.has(key)) seen.set(key, conf);
  }
  return [...seen.values()];
}
