import { readdirSync, readFileSync } from 'node:fs';
import { execPlugin } from '../../lib/cni/delegate.js';
import type { CniLogger } from '../../lib/cni/log.js';
import { executePlugin, type CniPlugin, type CommandContext, type GcContext } from '../../lib/cni/skeleton.js';
import type { CniCommand, CniResult } from '../../lib/cni/types.js';
import { isObject, type Json } from '../../lib/cni/validate.js';
import { parseResult } from '../../lib/cni/version.js';
import { removeFileIfExists, writeFileAtomic } from '../../lib/atomic-file.js';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { bridgePlugin } from '../bridge/plugin.js';
import { parseSubnetEnv, type SubnetEnv } from '../../overlayd/subnet-env.js';
import { defaultDelegateType, parseOverlayConfig, type OverlayConfig } from './config.js';
import { delegateConfig, gcDelegateConfigs, savedConfigPath, savedContainerIds, staleSavedConfigs } from './plan.js';

// berth-overlay: flannel's CNI plugin for berth. It turns the node's subnet (written by
// berth-overlayd) into a berth-bridge + berth-host-local config, saves that config per container
// so DEL and CHECK see what ADD used even after the subnet file changed, and delegates every verb.

/** The node's subnet file. Missing means overlayd has not leased a subnet yet: try again later. */
function readSubnetEnv(path: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BerthError('try-again', `subnetFile: ${path} does not exist (berth-overlayd has not written this node's subnet yet)`);
    }
    throw new BerthError('io', `subnetFile: cannot read ${path}: ${errorMessage(err)}`);
  }
  return parseSubnetEnv(text, path);
}

/** The delegate config ADD saved for a container; undefined if there is none. */
function readSavedConfig(path: string): Json | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BerthError('io', `cannot read the saved delegate config ${path}: ${errorMessage(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BerthError('decode', `saved delegate config ${path} is not valid JSON: ${errorMessage(err)}`);
  }
  if (!isObject(parsed) || typeof parsed.type !== 'string') throw new BerthError('decode', `saved delegate config ${path} has no "type"`);
  return parsed;
}

/**
 * Run the delegate. berth-bridge is a library here as well, so it runs in-process (one Node
 * start per pod operation instead of two); any other type is executed from CNI_PATH.
 */
async function runDelegate(command: CniCommand, conf: Json, env: NodeJS.ProcessEnv, path: string[]): Promise<CniResult | undefined> {
  const type = conf.type as string;
  const stdin = JSON.stringify(conf);
  if (type !== defaultDelegateType) return execPlugin(type, command, stdin, env, path);
  const outcome = await executePlugin(bridgePlugin, { env: { ...env, CNI_COMMAND: command }, stdin });
  let out: { code?: unknown; msg?: unknown; details?: unknown } = {};
  try {
    out = outcome.stdout ? (JSON.parse(outcome.stdout) as typeof out) : {};
  } catch {
    // reported below
  }
  if (outcome.exitCode !== 0) {
    throw new BerthError('internal', `${type}: ${typeof out.msg === 'string' ? out.msg : outcome.stdout}`, {
      cniCode: typeof out.code === 'number' ? out.code : undefined,
      details: typeof out.details === 'string' ? out.details : undefined,
    });
  }
  return command === 'ADD' ? parseResult(out, `${type} result`) : undefined;
}

/** DEL and CHECK go out at the request's version, with the runtime's prevResult. */
function withRequest(saved: Json, ctx: CommandContext<OverlayConfig>): Json {
  const out: Json = { ...saved, cniVersion: ctx.cniVersion };
  if (ctx.raw.prevResult !== undefined) out.prevResult = ctx.raw.prevResult;
  return out;
}

async function add(ctx: CommandContext<OverlayConfig>): Promise<CniResult> {
  const delegate = delegateConfig(ctx.conf, readSubnetEnv(ctx.conf.subnetFile));
  // Saved before delegating: the runtime calls DEL after a failed ADD, and that DEL must undo
  // exactly what this ADD may have half done, whatever the subnet file says by then.
  writeFileAtomic(savedConfigPath(ctx.conf.dataDir, ctx.containerId), JSON.stringify(delegate), { mode: 0o600 });
  const result = await runDelegate('ADD', delegate, ctx.env, ctx.path);
  if (!result) throw new BerthError('internal', `${delegate.type as string} returned no result`);
  return result;
}

function generatedForDel(conf: OverlayConfig, log: CniLogger): Json | undefined {
  try {
    return delegateConfig(conf, readSubnetEnv(conf.subnetFile));
  } catch (err) {
    // Nothing saved and no usable subnet file: this plugin never set anything up that it could
    // find again, and DEL must not block the pod's removal.
    log.warn({ subnetFile: conf.subnetFile, err: errorMessage(err) }, 'no saved delegate config and no usable subnet file; nothing to delete');
    return undefined;
  }
}

async function del(ctx: CommandContext<OverlayConfig>): Promise<void> {
  const path = savedConfigPath(ctx.conf.dataDir, ctx.containerId);
  let delegate: Json | undefined;
  try {
    delegate = readSavedConfig(path);
  } catch (err) {
    ctx.log.warn({ path, err: errorMessage(err) }, 'unreadable saved delegate config; using the subnet file');
  }
  delegate ??= generatedForDel(ctx.conf, ctx.log);
  if (!delegate) return;
  await runDelegate('DEL', withRequest(delegate, ctx), ctx.env, ctx.path);
  removeFileIfExists(path);
}

async function check(ctx: CommandContext<OverlayConfig>): Promise<void> {
  const path = savedConfigPath(ctx.conf.dataDir, ctx.containerId);
  const saved = readSavedConfig(path);
  if (!saved) throw new BerthError('not-found', `container ${ctx.containerId}: no saved delegate config at ${path} (was it added by berth-overlay with this dataDir?)`);
  await runDelegate('CHECK', withRequest(saved, ctx), ctx.env, ctx.path);
}

function savedNames(dataDir: string): string[] {
  try {
    return readdirSync(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new BerthError('io', `dataDir: cannot list ${dataDir}: ${errorMessage(err)}`);
  }
}

async function gc(ctx: GcContext<OverlayConfig>): Promise<void> {
  const { conf, log } = ctx;
  const configs: Json[] = [];
  try {
    configs.push(delegateConfig(conf, readSubnetEnv(conf.subnetFile)));
  } catch (err) {
    log.warn({ subnetFile: conf.subnetFile, err: errorMessage(err) }, 'GC without the subnet file: using the saved delegate configs');
  }
  const names = savedNames(conf.dataDir);
  for (const name of savedContainerIds(names)) {
    try {
      const saved = readSavedConfig(savedConfigPath(conf.dataDir, name));
      if (saved) configs.push(saved);
    } catch (err) {
      log.warn({ name, err: errorMessage(err) }, 'skipping an unreadable saved delegate config');
    }
  }
  // Every delegate config is tried; the errors are reported together (spec: GC keeps going).
  const failures: string[] = [];
  for (const delegate of gcDelegateConfigs(configs, ctx.cniVersion)) {
    try {
      await runDelegate('GC', { ...delegate, 'cni.dev/valid-attachments': ctx.validAttachments }, ctx.env, ctx.path);
    } catch (err) {
      failures.push(errorMessage(err));
    }
  }
  // Saved configs of stale attachments stay until their delegate GC worked, so a later GC can retry.
  if (failures.length > 0) throw new BerthError('internal', `GC: ${failures.join('; ')}`);
  for (const name of staleSavedConfigs(names, ctx.validAttachments)) removeFileIfExists(savedConfigPath(conf.dataDir, name));
}

export const overlayPlugin: CniPlugin<OverlayConfig> = {
  name: 'berth-overlay',
  about: "connects containers to the node's overlay subnet (from berth-overlayd's subnet file) through berth-bridge and berth-host-local",
  parseConfig: parseOverlayConfig,
  add,
  del,
  check,
  gc,
  async status(ctx) {
    let env: SubnetEnv;
    try {
      env = readSubnetEnv(ctx.conf.subnetFile);
    } catch (err) {
      // STATUS asks "could ADD work now?": not until overlayd has written a valid subnet file.
      const msg = errorMessage(err);
      throw new BerthError('not-available', msg.includes(ctx.conf.subnetFile) ? msg : `subnetFile ${ctx.conf.subnetFile}: ${msg}`);
    }
    await runDelegate('STATUS', delegateConfig(ctx.conf, env), ctx.env, ctx.path);
  },
};
