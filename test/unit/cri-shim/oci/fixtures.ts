import type { ContainerSpecInput, HostDevice } from '../../../../cri-shim/oci/container-spec.js';
import type { ImageConfig, SandboxSpecInput } from '../../../../cri-shim/oci/sandbox-spec.js';
import { BerthError } from '../../../../lib/errors.js';
import { ContainerConfig, type DeepPartial, PodSandboxConfig } from '../../../../proto/gen/runtime/v1/api.js';

// Builders for spec-builder inputs: full defaults, with per-test overrides.

export const pauseImage: ImageConfig = { user: '', env: ['PATH=/bin'], entrypoint: ['/pause'], cmd: [], workingDir: '', stopSignal: 'SIGINT' };
export const appImage: ImageConfig = { user: '', env: ['PATH=/usr/bin:/bin', 'LANG=C'], entrypoint: ['/entry'], cmd: ['serve'], workingDir: '/srv', stopSignal: '' };

export const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\n';
export const group = 'root:x:0:\nwheel:x:10:app,other\napp:x:1000:\naudio:x:29:app\nstaff:x:50:other\n';

export function podConfig(p: DeepPartial<PodSandboxConfig> = {}): PodSandboxConfig {
  return PodSandboxConfig.fromPartial({ metadata: { name: 'web', namespace: 'default', uid: 'u1', attempt: 0 }, hostname: 'web-0', ...p });
}

export function containerConfig(p: DeepPartial<ContainerConfig> = {}): ContainerConfig {
  return ContainerConfig.fromPartial({ metadata: { name: 'app', attempt: 0 }, image: { image: 'docker.io/library/app:1' }, ...p });
}

export function sandboxInput(p: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
  return {
    id: 'sb1',
    config: podConfig(),
    image: pauseImage,
    netnsPath: undefined,
    cgroupDriver: 'cgroupfs',
    defaultCgroupParent: '/berth.io',
    minOomScoreAdj: -999,
    sandboxFiles: { hostname: '/run/sb/hostname', hosts: '/run/sb/hosts', resolvConf: '/run/sb/resolv.conf', shm: '' },
    apparmorEnabled: false,
    readFile: () => {
      throw new Error('ENOENT');
    },
    ...p,
  };
}

export const devNull: HostDevice = { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 };
export const devFuse: HostDevice = { path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0 };
export const devSda: HostDevice = { path: '/dev/sda', type: 'b', major: 8, minor: 0, mode: 0o660, uid: 0, gid: 6 };
const hostDevs = [devNull, devFuse, devSda];

export function containerInput(p: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return {
    id: 'c1',
    config: containerConfig(),
    sandboxConfig: podConfig(),
    sandboxId: 'sb1',
    sandboxPid: 4242,
    image: appImage,
    etcPasswd: passwd,
    etcGroup: group,
    sandboxFiles: { hostname: '/run/sb/hostname', hosts: '/run/sb/hosts', resolvConf: '/run/sb/resolv.conf', shm: '/proc/4242/root/dev/shm' },
    cgroupDriver: 'cgroupfs',
    defaultCgroupParent: '/berth.io',
    minOomScoreAdj: -999,
    apparmorEnabled: false,
    hostDevices: () => hostDevs,
    statDevice: (path) => hostDevs.find((d) => d.path === path),
    readFile: () => {
      throw new Error('ENOENT');
    },
    cdiSpecs: [],
    ...p,
  };
}

/** Run `fn`, which must throw an InvalidArgument BerthError, and return its message. */
export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof BerthError) || err.kind !== 'invalid-argument') throw err;
    return err.message;
  }
  throw new Error('expected an error');
}
