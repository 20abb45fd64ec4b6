import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfigFile, parseArgs, parseBerthdConfig, type BerthdArgs } from '../../../berthd/config.js';

const dir = mkdtempSync(join(tmpdir(), 'berthd-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function args(argv: string[], env: NodeJS.ProcessEnv = {}): BerthdArgs {
  const parsed = parseArgs(argv, env);
  if (typeof parsed === 'string') throw new Error(`unexpected ${parsed}`);
  return parsed;
}

describe('berthd configuration', () => {
  it('a present section is enabled with its component defaults; an absent one is not loaded at all', () => {
    const c = parseBerthdConfig({ cri: {}, cnid: { socket: '/run/x/cni.sock' } }, 'test');
    expect(Object.keys(c.components)).toEqual(['cri', 'cnid']);
    expect(c.components.cri).toMatchObject({ listen: 'unix:///run/berth/cri.sock', containerd: '/run/containerd/containerd.sock', namespace: 'berth.io' });
    expect(c.components.cnid).toEqual({ socket: '/run/x/cni.sock', logLevel: 'info' });
    expect(c.http).toBe('127.0.0.1:9400');
  });

  it('enabled: false keeps a section validated but not started', () => {
    const c = parseBerthdConfig({ cri: {}, csi: { enabled: false, nodeId: 'n1' } }, 'test');
    expect(Object.keys(c.components)).toEqual(['cri']);
    expect(() => parseBerthdConfig({ cri: {}, csi: { enabled: false, nodeId: 'n1', bogus: 1 } }, 'test')).toThrow(/test: csi.bogus|csi: .*bogus/);
  });

  it('names the section and key of a bad setting', () => {
    expect(() => parseBerthdConfig({ cri: { listen: 'tcp://1.2.3.4:5' } }, 'b.yaml')).toThrow('b.yaml: cri.listen: must be unix:///path or an absolute path');
    expect(() => parseBerthdConfig({ csi: {} }, 'b.yaml')).toThrow('b.yaml: csi.nodeId is required');
    expect(() => parseBerthdConfig({ gpu: { backend: 'cuda' } }, 'b.yaml')).toThrow(/b\.yaml: gpu\.backend: /);
    expect(() => parseBerthdConfig({ gpu: { backend: 'fake' } }, 'b.yaml')).toThrow('b.yaml: gpu.fakeDir is required with backend fake');
    expect(() => parseBerthdConfig({ overlay: { leaseStore: 'file' } }, 'b.yaml')).toThrow('b.yaml: overlay.networkConfig: required with the file lease store');
    expect(() => parseBerthdConfig({ cnid: { socket: 'relative.sock' } }, 'b.yaml')).toThrow('b.yaml: cnid.socket: must be an absolute path');
    expect(() => parseBerthdConfig({ cri: {}, crio: {} }, 'b.yaml')).toThrow(/b\.yaml: crio: unknown setting/);
    expect(() => parseBerthdConfig({ cri: { enabled: 'yes' } }, 'b.yaml')).toThrow('b.yaml: cri.enabled: expected true or false');
    expect(() => parseBerthdConfig({ cri: 'on' }, 'b.yaml')).toThrow(/b\.yaml: cri: /);
  });

  it('refuses a configuration with no component enabled', () => {
    expect(() => parseBerthdConfig({}, 'b.yaml')).toThrow('b.yaml: no component is enabled');
    expect(() => parseBerthdConfig({ cri: { enabled: false } }, 'b.yaml')).toThrow('no component is enabled');
  });

  it('turns off the GPU and overlay per-component HTTP servers, which berthd replaces, unless a section asks for them', () => {
    const c = parseBerthdConfig({ gpu: { backend: 'fake', fakeDir: '/f' }, overlay: { networkConfig: '/n.json' } }, 't');
    expect(c.components.gpu?.metricsAddr).toBe('');
    expect(c.components.overlay?.healthzAddr).toBe('');
    const own = parseBerthdConfig({ gpu: { backend: 'fake', fakeDir: '/f', metricsAddr: '127.0.0.1:9402' } }, 't');
    expect(own.components.gpu?.metricsAddr).toBe('127.0.0.1:9402');
  });

  it('gives every section the top-level log level unless it sets its own', () => {
    const c = parseBerthdConfig({ logLevel: 'warn', cri: {}, csi: { nodeId: 'n', logLevel: 'debug' } }, 't');
    expect(c.components.cri?.logLevel).toBe('warn');
    expect(c.components.csi?.logLevel).toBe('debug');
  });
});

describe('berthd command line', () => {
  it('reads --config, and flags override the file: --enable, --disable, --set, --http, --log-level', () => {
    const path = file('a.yaml', 'cri: { namespace: from-file }\ngpu: { enabled: false, backend: fake, fakeDir: /f }\ncnid: {}\n');
    const a = args(['--config', path, '--enable', 'gpu', '--disable', 'cnid', '--set', 'cri.namespace=from-flag', '--set', 'csi.nodeId=n9', '--http', '', '--log-level', 'debug']);
    expect(Object.keys(a.config.components).sort()).toEqual(['cri', 'csi', 'gpu']);
    expect(a.config.components.cri?.namespace).toBe('from-flag');
    expect(a.config.components.csi?.nodeId).toBe('n9');
    expect(a.config.http).toBe('');
    expect(a.config.logLevel).toBe('debug');
    expect(a.config.source).toBe(path);
  });

  it('--set reads numbers and booleans as YAML would', () => {
    const a = args(['--enable', 'cri,csi', '--set', 'csi.nodeId=n1', '--set', 'cri.streamPort=10010', '--set', 'csi.kubeletRegistration=true']);
    expect(a.config.components.cri?.streamPort).toBe(10010);
    expect(a.config.components.csi?.kubeletRegistration).toBe(true);
  });

  it('takes the file from $BERTH_CONFIG, and load() reads it again for SIGHUP', () => {
    const path = file('b.yaml', 'cri: {}\n');
    const a = args([], { BERTH_CONFIG: path });
    expect(Object.keys(a.config.components)).toEqual(['cri']);
    writeFileSync(path, 'cri: {}\ncnid: {}\n');
    expect(Object.keys(a.load().components)).toEqual(['cri', 'cnid']);
    writeFileSync(path, 'cri: { namespace: "bad namespace" }\n');
    expect(() => a.load()).toThrow(/cri\.namespace/);
  });

  it('uses the default file only when it exists', () => {
    expect(() => parseArgs([], {}, (p) => p === defaultConfigFile)).toThrow(new RegExp(defaultConfigFile));
    expect(() => parseArgs([], {}, () => false)).toThrow('flags: no component is enabled');
  });

  it('refuses unknown flags and components, and answers --help and --version', () => {
    expect(() => parseArgs(['--bogus', 'x'], {})).toThrow('unknown flag --bogus');
    expect(() => parseArgs(['--enable', 'cri,docker'], {})).toThrow('--enable: unknown component "docker"');
    expect(() => parseArgs(['--set', 'nodot'], {})).toThrow('--set nodot: expected section.key=value');
    expect(() => parseArgs(['--config'], {})).toThrow('--config: a value is required');
    expect(parseArgs(['--help'], {})).toBe('help');
    expect(parseArgs(['--version'], {})).toBe('version');
  });
});
