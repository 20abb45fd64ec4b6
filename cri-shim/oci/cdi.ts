import { parse as parseYaml } from 'yaml';
import { BerthError } from '../../lib/errors.js';
import type { HostDevice } from './host-devices.js';
import { mergeMounts } from './mounts.js';
import type { Hook, Hooks, LinuxDevice, Mount, Spec } from './spec-types.js';

// Container Device Interface: vendor spec files describe devices as edits to an OCI spec
// (env, device nodes, mounts, hooks). berth resolves requested names and applies the edits.

export const cdiMaxVersion = [0, 8, 0] as const;

export interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string;
  options?: string[];
}

export interface CdiHook {
  hookName: string;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
  additionalGids?: number[];
}

export interface CdiSpecFile {
  path: string;
  cdiVersion: string;
  kind: string;
  devices: { name: string; containerEdits?: CdiEdits }[];
  containerEdits?: CdiEdits;
}

function versionOk(v: string): boolean {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?$/.exec(v.trim());
  if (!m) return false;
  const parts = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  for (let i = 0; i < 3; i++) {
    if (parts[i]! !== cdiMaxVersion[i]) return parts[i]! < cdiMaxVersion[i]!;
  }
  return true;
}

/** Parse one CDI spec file (JSON or YAML); malformed files are InvalidArgument naming the path. */
export function parseCdiSpec(path: string, content: string): CdiSpecFile {
  let doc: unknown;
  try {
    doc = path.endsWith('.json') ? JSON.parse(content) : parseYaml(content);
  } catch (err) {
    throw new BerthError('invalid-argument', `CDI spec ${path}: cannot parse: ${(err as Error).message}`);
  }
  const bad = (why: string): BerthError => new BerthError('invalid-argument', `CDI spec ${path}: ${why}`);
  if (!doc || typeof doc !== 'object') throw bad('not an object');
  const d = doc as Partial<CdiSpecFile>;
  if (typeof d.cdiVersion !== 'string' || !versionOk(d.cdiVersion)) throw bad(`unsupported cdiVersion ${JSON.stringify(d.cdiVersion)} (berth reads up to ${cdiMaxVersion.join('.')})`);
  if (typeof d.kind !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(d.kind)) throw bad(`kind ${JSON.stringify(d.kind)} is not "vendor/class"`);
  if (!Array.isArray(d.devices)) throw bad('devices must be a list');
  for (const dev of d.devices) {
    if (!dev || typeof dev.name !== 'string' || !dev.name) throw bad('a device has no name');
  }
  return { path, cdiVersion: d.cdiVersion, kind: d.kind, devices: d.devices, containerEdits: d.containerEdits };
}

/** Requested CDI device names: config.CDIDevices, then cdi.k8s.io/* annotations (comma lists). */
export function requestedCdiDevices(cdiDevices: { name: string }[], annotations: Record<string, string>): string[] {
  const names = cdiDevices.map((d) => d.name.trim());
  for (const key of Object.keys(annotations).sort()) {
    if (key.startsWith('cdi.k8s.io/')) names.push(...annotations[key]!.split(',').map((n) => n.trim()));
  }
  return [...new Set(names.filter(Boolean))];
}

export interface CdiResolved {
  name: string;
  spec: CdiSpecFile;
  edits: CdiEdits | undefined;
}

/** Resolve fully-qualified names ("vendor.com/class=name"); a later spec file wins for a device. */
export function resolveCdiDevices(names: string[], files: { path: string; content: string }[]): CdiResolved[] {
  if (names.length === 0) return [];
  const table = new Map<string, { spec: CdiSpecFile; edits: CdiEdits | undefined }>();
  // A broken file for some other vendor must not block these devices; its error is only
  // reported if a requested device stays unresolved.
  const broken: string[] = [];
  for (const f of files) {
    let spec: CdiSpecFile;
    try {
      spec = parseCdiSpec(f.path, f.content);
    } catch (err) {
      broken.push((err as Error).message);
      continue;
    }
    for (const dev of spec.devices) table.set(`${spec.kind}=${dev.name}`, { spec, edits: dev.containerEdits });
  }
  return names.map((name) => {
    if (!/^[^/=]+\/[^/=]+=[^=]+$/.test(name)) {
      throw new BerthError('invalid-argument', `CDI device "${name}" is not a fully-qualified name (vendor.com/class=name)`);
    }
    const hit = table.get(name);
    if (!hit) {
      const why = broken.length ? ` (unreadable: ${broken.join('; ')})` : '';
      throw new BerthError('invalid-argument', `CDI device "${name}" is not described by any CDI spec file${why}`);
    }
    return { name, ...hit };
  });
}

const hookNames = new Set<keyof Hooks>(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);

function applyEdits(spec: Spec, e: CdiEdits, where: string, statDevice: (path: string) => HostDevice | undefined, mounts: Mount[]): void {
  const process = spec.process!;
  if (e.env?.length) {
    const env = [...(process.env ?? [])];
    for (const kv of e.env) {
      const key = kv.split('=', 1)[0];
      const i = env.findIndex((x) => x.split('=', 1)[0] === key);
      if (i >= 0) env[i] = kv;
      else env.push(kv);
    }
    process.env = env;
  }
  for (const n of e.deviceNodes ?? []) {
    if (!n.path) throw new BerthError('invalid-argument', `${where}: a deviceNode has no path`);
    let { major, minor, type } = n;
    if (major === undefined || minor === undefined || !type) {
      const st = statDevice(n.hostPath || n.path);
      if (!st) throw new BerthError('invalid-argument', `${where}: device node ${n.hostPath || n.path} not found on the host`);
      major ??= st.major;
      minor ??= st.minor;
      type ||= st.type;
    }
    const dev: LinuxDevice = { path: n.path, type, major, minor };
    if (n.fileMode !== undefined) dev.fileMode = n.fileMode;
    if (n.uid !== undefined) dev.uid = n.uid;
    if (n.gid !== undefined) dev.gid = n.gid;
    const linux = (spec.linux ??= {});
    linux.devices = [...(linux.devices ?? []).filter((d) => d.path !== n.path), dev];
    const resources = (linux.resources ??= {});
    resources.devices = [...(resources.devices ?? []), { allow: true, type, major, minor, access: n.permissions || 'rwm' }];
  }
  for (const m of e.mounts ?? []) {
    const type = m.type || 'bind';
    const options = [...(m.options ?? [])];
    if (type === 'bind' && !options.some((o) => o === 'bind' || o === 'rbind')) options.unshift('rbind');
    mounts.push({ destination: m.containerPath, type, source: m.hostPath, options });
  }
  for (const h of e.hooks ?? []) {
    if (!hookNames.has(h.hookName as keyof Hooks)) throw new BerthError('invalid-argument', `${where}: unknown hook "${h.hookName}"`);
    const hook: Hook = { path: h.path };
    if (h.args) hook.args = h.args;
    if (h.env) hook.env = h.env;
    if (h.timeout !== undefined) hook.timeout = h.timeout;
    const hooks = (spec.hooks ??= {});
    const list = (hooks[h.hookName as keyof Hooks] ??= []);
    list.push(hook);
  }
  if (e.additionalGids?.length) {
    const user = process.user;
    const gids = new Set(user.additionalGids ?? []);
    for (const g of e.additionalGids) if (g !== user.gid) gids.add(g);
    user.additionalGids = [...gids];
  }
}

/** Apply the resolved devices' edits: each spec file's own edits once, then each device's. */
export function applyCdiDevices(spec: Spec, devices: CdiResolved[], statDevice: (path: string) => HostDevice | undefined): Spec {
  if (devices.length === 0) return spec;
  const mounts: Mount[] = [];
  const seenSpecs = new Set<CdiSpecFile>();
  for (const d of devices) {
    if (!seenSpecs.has(d.spec)) {
      seenSpecs.add(d.spec);
      if (d.spec.containerEdits) applyEdits(spec, d.spec.containerEdits, `CDI spec ${d.spec.path}`, statDevice, mounts);
    }
    if (d.edits) applyEdits(spec, d.edits, `CDI device "${d.name}" (${d.spec.path})`, statDevice, mounts);
  }
  if (mounts.length) spec.mounts = mergeMounts(spec.mounts ?? [], mounts);
  return spec;
}
