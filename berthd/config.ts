// berthd's settings: one YAML file with a section per component, each section holding exactly
// the keys that component's own executable takes in its --config file, plus `enabled`.
// Validated as a whole before anything starts; errors name `section.key`.
import * as z from 'zod';
import { componentNames, type ComponentName } from '../lib/component.js';
import { describeZodError, loadConfigFile, splitFlags } from '../lib/config-file.js';
import { BerthError } from '../lib/errors.js';
import { berthVersion } from '../lib/version.js';
import { parseConfig as parseCriConfig, type CriConfig } from '../cri-shim/config.js';
import { parseConfig as parseCsiConfig, type CsiConfig } from '../csi-driver/config.js';
import { parseConfig as parseGpuConfig, type GpuConfig } from '../device-plugin/config.js';
import { parseConfig as parseOverlayConfig, type OverlaydConfig } from '../overlayd/config.js';
import type { CnidConfig } from '../cni-plugins/cnid/component.js';

export const defaultConfigFile = '/etc/berth/berth.yaml';
export const defaultHttpAddress = '127.0.0.1:9400';

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

/** The settings of each component, as its own parseConfig returns them. */
export interface ComponentConfigs {
  cri: CriConfig;
  csi: CsiConfig;
  gpu: GpuConfig;
  overlay: OverlaydConfig;
  cnid: CnidConfig;
}

export interface BerthdConfig {
  /** Where the settings came from (a file, or "defaults"), for messages. */
  source: string;
  logLevel: z.infer<typeof logLevel>;
  /** HOST:PORT of /metrics, /healthz and /readyz ('' turns them off). */
  http: string;
  /** Longest wait between two starts of a component that keeps failing. */
  restartBackoffMaxMs: number;
  /** The enabled components, in start order, each with its validated settings. */
  components: Partial<ComponentConfigs>;
}

const topLevel = z.strictObject({
  logLevel: logLevel.default('info'),
  http: z.string().regex(/^(\[[^\]]+\]|[^:]+):\d+$/, 'expected HOST:PORT').or(z.literal('')).default(defaultHttpAddress),
  restartBackoffMaxMs: z.number().int().min(100).max(600_000).default(30_000),
  cri: z.record(z.string(), z.unknown()).optional(),
  csi: z.record(z.string(), z.unknown()).optional(),
  gpu: z.record(z.string(), z.unknown()).optional(),
  overlay: z.record(z.string(), z.unknown()).optional(),
  cnid: z.record(z.string(), z.unknown()).optional(),
});

const cnidSchema = z.strictObject({
  socket: z.string().startsWith('/', 'must be an absolute path').default('/run/berth/cni.sock'),
  logLevel: logLevel.optional(),
});

/**
 * What each component's section may leave out because berthd does it once for all: the
 * GPU and overlay executables serve their own /metrics and /healthz by default, which berthd's
 * one endpoint replaces (a section may still turn its own on).
 */
const sectionDefaults: Partial<Record<ComponentName, Record<string, unknown>>> = {
  gpu: { metricsAddr: '' },
  overlay: { healthzAddr: '' },
};

/** Validate one section (its `enabled` already taken out) with the component's own rules. */
function parseSection(name: ComponentName, raw: Record<string, unknown>, source: string): ComponentConfigs[ComponentName] {
  switch (name) {
    case 'cri':
      return parseCriConfig(raw, source, name);
    case 'csi':
      return parseCsiConfig(raw, source, name);
    case 'gpu':
      return parseGpuConfig(raw, source, name);
    case 'overlay':
      return parseOverlayConfig(raw, source, name);
    case 'cnid': {
      const result = cnidSchema.safeParse(raw);
      if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, source, name));
      return { socket: result.data.socket, logLevel: result.data.logLevel };
    }
  }
}

/** Set `section.key=value` on the raw document (the value read as YAML would read a scalar). */
function applySetting(doc: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  const path = eq > 0 ? assignment.slice(0, eq).split('.') : [];
  if (path.length === 0 || path.some((p) => p === '')) throw new BerthError('invalid-argument', `--set ${assignment}: expected section.key=value`);
  const text = assignment.slice(eq + 1);
  const value: unknown = text === 'true' ? true : text === 'false' ? false : text !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
  let node = doc;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null) node = node[key] = {};
    else if (typeof next === 'object' && !Array.isArray(next)) node = next as Record<string, unknown>;
    else throw new BerthError('invalid-argument', `--set ${assignment}: ${key} is not a section`);
  }
  node[path[path.length - 1]!] = value;
}

/**
 * The whole configuration from a raw document. A section that is present is enabled unless it
 * says `enabled: false`; an absent one is disabled. Every section is validated, enabled or
 * not, so a typo in a disabled one is found before the day it is turned on.
 */
export function parseBerthdConfig(doc: Record<string, unknown>, source: string): BerthdConfig {
  const top = topLevel.safeParse(doc);
  if (!top.success) throw new BerthError('invalid-config', describeZodError(top.error, source));
  const components: Partial<ComponentConfigs> = {};
  for (const name of componentNames) {
    const section = top.data[name];
    if (section === undefined) continue;
    const { enabled = true, ...settings } = section;
    if (typeof enabled !== 'boolean') throw new BerthError('invalid-config', `${source}: ${name}.enabled: expected true or false`);
    const withDefaults = { ...sectionDefaults[name], logLevel: top.data.logLevel, ...settings };
    const parsed = parseSection(name, withDefaults, source);
    if (enabled) (components as Record<ComponentName, unknown>)[name] = parsed;
  }
  if (Object.keys(components).length === 0) throw new BerthError('invalid-config', `${source}: no component is enabled (add a section such as "cri: {}" or pass --enable cri)`);
  return { source, logLevel: top.data.logLevel, http: top.data.http, restartBackoffMaxMs: top.data.restartBackoffMaxMs, components };
}

export const usage = `berthd ${berthVersion}: berth's node agent, any set of its components in one process

Usage: berthd [--config FILE] [flags]

  --config FILE        the settings (default $BERTH_CONFIG or ${defaultConfigFile} if it exists)
  --enable LIST        also enable these components (comma-separated: ${componentNames.join(',')})
  --disable LIST       disable these components whatever the file says
  --set SECTION.KEY=V  override one setting (repeatable), e.g. --set cri.listen=unix:///run/x.sock
  --http HOST:PORT     /metrics, /healthz and /readyz (default ${defaultHttpAddress}; "" turns them off)
  --log-level LEVEL    fatal|error|warn|info|debug|trace (default info; a section's logLevel wins)
  --version, --help

The file has one section per component, each taking the keys of that component's own
executable's --config file (berth-cri, berth-csi, berth-gpu, berth-overlayd) and enabled:
  cri:     { enabled: true, containerd: /run/containerd/containerd.sock }
  csi:     { enabled: true, nodeId: node-1, root: /var/lib/berth/volumes }
  gpu:     { enabled: false, backend: auto }
  overlay: { enabled: false, leaseStore: etcd, etcdEndpoints: [http://10.0.0.1:2379] }
  cnid:    { enabled: true, socket: /run/berth/cni.sock }
A section that is present is enabled unless it says enabled: false.

Each component serves its usual sockets. A component that fails to start, or whose code throws,
is stopped and started again (backing off up to restartBackoffMaxMs) while the others go on.
SIGHUP reads the file again: a component whose section changed is reloaded (gpu) or restarted,
one turned on or off is started or stopped; an invalid file is logged and the running
configuration kept. SIGTERM/SIGINT stop every component; containers keep running.
Under systemd: READY=1 once every component has started (or failed its first start), STATUS=
with each component's state, and WATCHDOG=1 from the event loop when WatchdogSec= is set.
Logs are JSON lines on stdout with a component field.
`;

export interface BerthdArgs {
  config: BerthdConfig;
  /** Reads the settings again (SIGHUP): the same file, flags and environment. */
  load(): BerthdConfig;
}

/** The command line and environment: what to read, and what to override in it. */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env, fileExists: (path: string) => boolean = () => false): BerthdArgs | 'help' | 'version' {
  const parsed = splitFlags(argv);
  if (typeof parsed === 'string') return parsed;
  let configFile = env.BERTH_CONFIG || undefined;
  const enable: string[] = [];
  const disable: string[] = [];
  const sets: string[] = [];
  let http: string | undefined;
  let level = env.BERTH_LOG_LEVEL || undefined;
  const names = (flag: string, list: string): string[] => {
    const items = list.split(',').map((s) => s.trim()).filter(Boolean);
    for (const item of items) if (!(componentNames as readonly string[]).includes(item)) throw new BerthError('invalid-argument', `${flag}: unknown component "${item}" (one of ${componentNames.join(', ')})`);
    return items;
  };
  for (const { name, value } of parsed) {
    if (value === undefined) throw new BerthError('invalid-argument', `${name}: a value is required (see --help)`);
    if (name === '--config') configFile = value;
    else if (name === '--enable') enable.push(...names(name, value));
    else if (name === '--disable') disable.push(...names(name, value));
    else if (name === '--set') sets.push(value);
    else if (name === '--http') http = value;
    else if (name === '--log-level') level = value;
    else throw new BerthError('invalid-argument', `unknown flag ${name} (see --help)`);
  }
  const file = configFile ?? (fileExists(defaultConfigFile) ? defaultConfigFile : undefined);
  const load = (): BerthdConfig => {
    const doc = file ? loadConfigFile(file) : {};
    if (level !== undefined) doc.logLevel = level;
    if (http !== undefined) doc.http = http;
    for (const name of enable) {
      const section = doc[name];
      if (section === undefined || section === null) doc[name] = {};
      else if (typeof section === 'object' && !Array.isArray(section)) (section as Record<string, unknown>).enabled = true;
    }
    for (const name of disable) {
      const section = doc[name];
      if (section !== undefined && section !== null && typeof section === 'object' && !Array.isArray(section)) (section as Record<string, unknown>).enabled = false;
      else delete doc[name];
    }
    for (const assignment of sets) applySetting(doc, assignment);
    return parseBerthdConfig(doc, file ?? 'flags');
  };
  return { config: load(), load };
}
