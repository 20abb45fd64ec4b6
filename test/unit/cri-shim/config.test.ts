import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../cri-shim/config.js';
import { parseArgs } from '../../../cri-shim/main-args.js';

const tmp: string[] = [];
afterEach(() => {
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('berth-cri configuration', () => {
  it('has defaults a node operator expects', () => {
    const c = parseConfig({});
    expect(c).toMatchObject({ listen: 'unix:///run/berth/cri.sock', namespace: 'berth.io', cgroupDriver: 'cgroupfs', cniConfDir: '/etc/cni/net.d', cniBinDir: ['/opt/cni/bin'] });
  });

  it('names the offending key of a bad file', () => {
    expect(() => parseConfig({ cgroupDriver: 'cgroupv3' }, '/etc/berth/cri.yaml')).toThrow(/\/etc\/berth\/cri.yaml: cgroupDriver/);
    expect(() => parseConfig({ runtimeHandlers: { crun: { binary: '' } } }, 'f')).toThrow(/runtimeHandlers.crun.binary/);
    expect(() => parseConfig({ bogus: 1 }, 'f')).toThrow(/bogus/);
    expect(() => parseConfig({ defaultRuntimeHandler: 'kata' }, 'f')).toThrow(/defaultRuntimeHandler: "kata" is not in runtimeHandlers/);
  });

  it('merges flags over the file, with runtime handlers as NAME=BINARY', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-cfg-'));
    tmp.push(dir);
    writeFileSync(join(dir, 'cri.yaml'), 'cgroupDriver: systemd\nsandboxImage: example.test/pause:1\nlogLevel: warn\n');
    const c = parseArgs(['--config', join(dir, 'cri.yaml'), '--log-level', 'debug', '--runtime-handler', 'crun=/usr/bin/crun', '--cni-bin-dir', '/a:/b']);
    expect(c).toMatchObject({ cgroupDriver: 'systemd', sandboxImage: 'example.test/pause:1', logLevel: 'debug', cniBinDir: ['/a', '/b'] });
    expect(c !== 'help' && c !== 'version' && c.runtimeHandlers).toEqual({ runc: { binary: 'runc' }, crun: { binary: '/usr/bin/crun' } });
    expect(() => parseArgs(['--nope', 'x'])).toThrow(/unknown flag --nope/);
    expect(() => parseArgs(['--root'])).toThrow(/--root: a value is required/);
    writeFileSync(join(dir, 'bad.yaml'), 'a: [1,');
    expect(() => parseArgs(['--config', join(dir, 'bad.yaml')])).toThrow(/not valid YAML/);
  });

  it('serves /metrics only when given an address', () => {
    expect(parseConfig({}).metricsAddr).toBe('');
    expect(parseArgs(['--metrics-addr', '127.0.0.1:9405'])).toMatchObject({ metricsAddr: '127.0.0.1:9405' });
  });

  it('bounds what a pull reads, 4 MiB of manifest and 8 MiB of config unless set', () => {
    expect(parseConfig({})).toMatchObject({ maxManifestSize: 4 * 1024 * 1024, maxImageConfigSize: 8 * 1024 * 1024 });
    expect(parseArgs(['--max-manifest-size', '65536', '--max-image-config-size', '1048576'])).toMatchObject({ maxManifestSize: 65536, maxImageConfigSize: 1048576 });
    expect(() => parseArgs(['--max-manifest-size', 'lots'])).toThrow(/flags: maxManifestSize/);
    expect(() => parseConfig({ maxImageConfigSize: -1 }, 'f')).toThrow(/f: maxImageConfigSize/);
  });

  it('bounds port-forwarding with settings a flag or the file may change, validated by name', () => {
    expect(parseConfig({})).toMatchObject({ portForwardConnectTimeoutMs: 5000, maxPortForwardPorts: 32, maxPortForwardStreams: 128 });
    const c = parseArgs(['--port-forward-connect-timeout-ms', '2500', '--max-port-forward-ports', '8', '--max-port-forward-streams', '16']);
    expect(c).toMatchObject({ portForwardConnectTimeoutMs: 2500, maxPortForwardPorts: 8, maxPortForwardStreams: 16 });
    expect(() => parseConfig({ portForwardConnectTimeoutMs: 0 }, 'f')).toThrow(/f: portForwardConnectTimeoutMs/);
    expect(() => parseArgs(['--port-forward-connect-timeout-ms', 'soon'])).toThrow(/flags: portForwardConnectTimeoutMs/);
    // Each port takes two of the 256 one-byte WebSocket channel numbers.
    expect(() => parseConfig({ maxPortForwardPorts: 129 }, 'f')).toThrow(/f: maxPortForwardPorts/);
    expect(() => parseConfig({ maxPortForwardStreams: 0 }, 'f')).toThrow(/f: maxPortForwardStreams/);
  });

  it('has streaming limits with defaults, flags and errors that name the field', () => {
    expect(parseConfig({})).toMatchObject({
      streamIdleTimeout: 4 * 3_600_000,
      streamMaxConcurrentStreams: 256,
      streamMaxMessageSize: 4 * 1024 * 1024,
      streamAttachBufferSize: 4 * 1024 * 1024,
      execSyncOutputLimit: 16 * 1024 * 1024,
    });
    const c = parseArgs(['--stream-idle-timeout', '90s', '--stream-max-concurrent-streams', '64', '--stream-max-message-size', '1048576', '--stream-attach-buffer-size', '262144']);
    expect(c).toMatchObject({ streamIdleTimeout: 90_000, streamMaxConcurrentStreams: 64, streamMaxMessageSize: 1048576, streamAttachBufferSize: 262144 });
    expect(parseConfig({ streamIdleTimeout: 30 }).streamIdleTimeout).toBe(30_000);
    expect(() => parseConfig({ streamIdleTimeout: 'forever' }, 'f')).toThrow(/f: streamIdleTimeout: .*duration/);
    expect(() => parseConfig({ streamIdleTimeout: '1000h' }, 'f')).toThrow(/streamIdleTimeout: at most 24 days/);
    expect(() => parseArgs(['--stream-max-concurrent-streams', 'lots'])).toThrow(/flags: streamMaxConcurrentStreams/);
    expect(() => parseConfig({ streamMaxMessageSize: 1024 }, 'f')).toThrow(/f: streamMaxMessageSize/);
    // An ExecSync reply is one gRPC message: a larger per-stream limit could never be sent.
    expect(() => parseConfig({ execSyncOutputLimit: 32 * 1024 * 1024 }, 'f')).toThrow(/f: execSyncOutputLimit/);
  });

  it('finds containerd\'s shims under /run/containerd unless told its state directory', () => {
    expect(parseConfig({}).containerdState).toBe('/run/containerd');
    expect(parseArgs(['--containerd-state', '/var/run/ctrd'])).toMatchObject({ containerdState: '/var/run/ctrd' });
    expect(() => parseConfig({ containerdState: '' }, 'f')).toThrow(/f: containerdState/);
  });

  it('prepares container rootfs ahead for 4 images, kept 5 minutes, unless set otherwise', () => {
    expect(parseConfig({})).toMatchObject({ spareRootfsImages: 4, spareRootfsIdle: 300_000 });
    expect(parseArgs(['--spare-rootfs-images', '0', '--spare-rootfs-idle', '30s'])).toMatchObject({ spareRootfsImages: 0, spareRootfsIdle: 30_000 });
    expect(() => parseArgs(['--spare-rootfs-images', 'some'])).toThrow(/flags: spareRootfsImages/);
    expect(() => parseConfig({ spareRootfsImages: 65 }, 'f')).toThrow(/f: spareRootfsImages/);
    expect(() => parseConfig({ spareRootfsIdle: '10ms' }, 'f')).toThrow(/f: spareRootfsIdle: at least 1s/);
  });
});
