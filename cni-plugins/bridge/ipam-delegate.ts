import { BerthError } from '../../lib/errors.js';
import { execPlugin, findPlugin } from '../../lib/cni/delegate.js';
import type { CommandContext, GcContext, StatusContext } from '../../lib/cni/skeleton.js';
import type { CniIpConfig, CniResult } from '../../lib/cni/types.js';
import { run } from '../../lib/exec.js';
import { compareVersions } from '../../lib/cni/version.js';
import { hostLocalPlugin } from '../host-local/plugin.js';

// Delegation to the IPAM plugin named in ipam.type (spec: "Delegated plugins"). berth's own
// host-local is a library too, so when the config names it, it runs in-process: same leases,
// same files, no second Node start (~30 ms) on the pod's critical path. Any other IPAM plugin is
// executed from CNI_PATH as the spec describes.

const inProcess = 'berth-host-local';

export interface IpamAddResult {
  ips: CniIpConfig[];
  routes: NonNullable<CniResult['routes']>;
  dns: CniResult['dns'];
}

export async function ipamAdd(type: string, ctx: CommandContext<unknown>): Promise<IpamAddResult> {
  let result: CniResult | undefined;
  if (type === inProcess) {
    result = await hostLocalPlugin.add({ ...ctx, conf: hostLocalPlugin.parseConfig(ctx.raw, 'ADD') });
  } else {
    result = await execPlugin(type, 'ADD', ctx.stdin, ctx.env, ctx.path);
  }
  if (!result?.ips?.length) throw new BerthError('internal', `IPAM plugin ${type} returned no IP addresses`);
  return { ips: result.ips.map(({ interface: _, ...ip }) => ip), routes: result.routes ?? [], dns: result.dns };
}

export async function ipamDel(type: string, ctx: CommandContext<unknown>): Promise<void> {
  if (type === inProcess) return hostLocalPlugin.del({ ...ctx, conf: hostLocalPlugin.parseConfig(ctx.raw, 'DEL') });
  await execPlugin(type, 'DEL', ctx.stdin, ctx.env, ctx.path);
}

export async function ipamCheck(type: string, ctx: CommandContext<unknown>): Promise<void> {
  if (type === inProcess) return hostLocalPlugin.check({ ...ctx, conf: hostLocalPlugin.parseConfig(ctx.raw, 'CHECK') });
  await execPlugin(type, 'CHECK', ctx.stdin, ctx.env, ctx.path);
}

export async function ipamGc(type: string, ctx: GcContext<unknown>): Promise<void> {
  if (type === inProcess) return hostLocalPlugin.gc({ ...ctx, conf: hostLocalPlugin.parseConfig(ctx.raw, 'GC') });
  await execPlugin(type, 'GC', ctx.stdin, ctx.env, ctx.path);
}

/**
 * STATUS is forwarded to the IPAM plugin. A plugin that predates spec 1.1.0 cannot answer it,
 * so for those "available" means: present in CNI_PATH and answering VERSION.
 */
export async function ipamStatus(type: string, ctx: StatusContext<unknown>): Promise<void> {
  if (type === inProcess) return hostLocalPlugin.status({ ...ctx, conf: hostLocalPlugin.parseConfig(ctx.raw, 'STATUS') });
  const executable = findPlugin(type, ctx.path);
  if (!executable) throw new BerthError('not-available', `IPAM plugin ${JSON.stringify(type)} not found in CNI_PATH (${ctx.path.join(':') || 'empty'})`);
  const version = await run(executable, [], { input: JSON.stringify({ cniVersion: ctx.cniVersion }), env: { ...ctx.env, CNI_COMMAND: 'VERSION' }, allowFailure: true });
  let supported: string[];
  try {
    supported = (JSON.parse(version.stdout) as { supportedVersions?: string[] }).supportedVersions ?? [];
  } catch {
    throw new BerthError('not-available', `IPAM plugin ${type} does not answer VERSION: ${version.stdout.trim() || version.stderr.trim()}`);
  }
  if (supported.some((v) => compareVersions(v, '1.1.0') >= 0)) await execPlugin(type, 'STATUS', ctx.stdin, ctx.env, ctx.path);
}
