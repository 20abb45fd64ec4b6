import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, type CallOptions, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { maxMessageBytes } from '../lib/grpc/unix-socket.js';
import type { BuiltImage } from '../lib/oci/image.js';
import { ContainerConfig, ImageServiceClient, ImageSpec, PodSandboxConfig, RuntimeServiceClient } from '../proto/gen/runtime/v1/api.js';
import { berthCniDir, repoRoot } from './cni.js';
import { spareSnapshotKeys, startContainerd, unmountUnder, type ContainerdWorld } from './containerd.js';
import { CniRunner, parseNetworkList } from '../lib/cni/runner.js';
import { testImageTags, testImages } from './images.js';
import { trySh, uniqueName } from './netns.js';
import { startRegistry } from './registry.js';
import { daemonNodeFlags } from '../lib/node-flags.js';

// The CRI test world: a private containerd, a local registry holding the test images, a CNI
// network on berth's own plugins (bridge + host-local + portmap, with its own bridge, subnet and
// lease directory), and berth-cri itself as kubelet would run it. Tests talk gRPC to it.

/** A generated gRPC client with every unary method returning a promise. */
export type Promisified<C> = {
  [K in keyof C]: C[K] extends (req: infer Req, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res: infer Res) => void) => unknown
    ? (req: Req) => Promise<Res>
    : never;
};

export function promisify<C extends object>(client: C, names: readonly string[]): Promisified<C> {
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const method = (client as Record<string, (...a: unknown[]) => unknown>)[name]!.bind(client);
    out[name] = (req: unknown) =>
      new Promise((resolve, reject) => method(req, (err: ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res))));
  }
  return out as Promisified<C>;
}

export const runtimeMethods = [
  'version', 'status', 'runtimeConfig', 'runPodSandbox', 'stopPodSandbox', 'removePodSandbox', 'podSandboxStatus', 'listPodSandbox',
  'createContainer', 'startContainer', 'stopContainer', 'removeContainer', 'listContainers', 'containerStatus', 'updateContainerResources',
  'reopenContainerLog', 'execSync', 'exec', 'attach', 'portForward', 'containerStats', 'listContainerStats', 'podSandboxStats', 'listPodSandboxStats',
  'listMetricDescriptors', 'listPodSandboxMetrics',
] as const;
export const imageMethods = ['listImages', 'imageStatus', 'pullImage', 'removeImage', 'imageFsInfo'] as const;

/** Push a built image (or an index over several) to the registry over the distribution API. */
export async function pushImage(host: string, repository: string, reference: string, image: BuiltImage | { index: { digest: string; bytes: Buffer; mediaType: string }; children: BuiltImage[] }): Promise<void> {
  const base = `http://${host}/v2/${repository}`;
  const putBlob = async (digest: string, bytes: Buffer): Promise<void> => {
    if ((await fetch(`${base}/blobs/${digest}`, { method: 'HEAD' })).ok) return;
    const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`registry upload start for ${repository}: HTTP ${start.status}`);
    const location = new URL(start.headers.get('location')!, `http://${host}`);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`registry blob upload ${digest}: HTTP ${put.status} ${await put.text()}`);
  };
  const putManifest = async (ref: string, bytes: Buffer, mediaType: string): Promise<void> => {
    const res = await fetch(`${base}/manifests/${ref}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType } });
    if (res.status !== 201) throw new Error(`registry manifest ${repository}:${ref}: HTTP ${res.status} ${await res.text()}`);
  };
  const pushOne = async (img: BuiltImage, ref: string): Promise<void> => {
    for (const blob of [...img.layers, img.config]) await putBlob(blob.digest, blob.bytes);
    await putManifest(ref, img.manifest.bytes, img.manifest.mediaType);
  };
  if ('index' in image) {
    for (const child of image.children) await pushOne(child, child.manifest.digest);
    await putManifest(reference, image.index.bytes, image.index.mediaType);
  } else {
    await pushOne(image, reference);
  }
}

/** An ImageSpec naming an image, as kubelet sends it. */
export function imageSpec(image: string): ImageSpec {
  return ImageSpec.fromPartial({ image, userSpecifiedImage: image });
}

let podSeq = 0;

/**
 * A pod config named `name` (unique uid, logs under the world's pod log directory, namespace
 * berth-e2e); top-level fields given replace the defaults.
 */
export function podSandboxConfig(world: { podLogDir: string }, name: string, overrides: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  podSeq += 1;
  return {
    ...PodSandboxConfig.fromPartial({
      metadata: { name, namespace: 'berth-e2e', uid: `${name}-${process.pid}-${podSeq}-${Date.now()}`, attempt: 0 },
      hostname: name,
      logDirectory: join(world.podLogDir, name),
      linux: { cgroupParent: '', sysctls: {} },
    }),
    ...overrides,
  };
}

/** A container config named `name` running `image`, logging to `<name>.log`; top-level fields given replace the defaults. */
export function containerConfig(name: string, image: string, overrides: Partial<ContainerConfig> = {}): ContainerConfig {
  return { ...ContainerConfig.fromPartial({ metadata: { name, attempt: 0 }, image: { image, userSpecifiedImage: image }, logPath: `${name}.log` }), ...overrides };
}

export interface CriWorldOptions {
  /** Extra berth-cri flags. */
  flags?: string[];
  /** Plugins chained after portmap in the world's conflist (berth-bandwidth, say). */
  chained?: Record<string, unknown>[];
  /** Also serve containerd's own CRI plugin (namespace k8s.io) on its socket, for comparisons. */
  containerdCri?: boolean;
  /** hosts.toml files: registry host -> content. */
  hostsToml?: Record<string, string>;
  /** Registry names (that resolve nowhere) whose hosts.toml names the world's registry as mirror. */
  mirrored?: string[];
  /**
   * false: start() prepares the world (registry, images, CNI network, containerd) but not
   * berth-cri; something else runs the CRI with criSettings() (berthd), and connect() follows.
   */
  berthCri?: boolean;
}

export interface BerthCri {
  socket: string;
  logFile: string;
  child: ChildProcess;
}

export class CriWorld {
  readonly dir: string;
  readonly cniConfDir: string;
  readonly podLogDir: string;
  readonly bridge: string;
  readonly subnet: string;
  cri!: BerthCri;
  /** The berth-cnid socket berth-cri's CNI calls may use (BERTH_CNI_SOCKET); none unless set before startCri(). */
  cnidSocket: string | undefined;
  runtime!: Promisified<InstanceType<typeof RuntimeServiceClient>>;
  images!: Promisified<InstanceType<typeof ImageServiceClient>>;
  private clients: { close(): void }[] = [];

  containerd!: ContainerdWorld;

  private constructor(
    readonly registry: { host: string; stop(): Promise<void> },
    private readonly options: CriWorldOptions,
  ) {
    this.dir = join('/tmp', uniqueName('berth-test-cri-'));
    this.cniConfDir = join(this.dir, 'net.d');
    this.podLogDir = join(this.dir, 'pods');
    this.bridge = uniqueName('bcri');
    this.subnet = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}.0/24`;
  }

  static async start(options: CriWorldOptions = {}): Promise<CriWorld> {
    const registry = await startRegistry();
    const world = new CriWorld(registry, options);
    try {
      await world.prepare();
      world.containerd = await startContainerd(
        options.containerdCri ? { cri: { sandboxImage: world.image('pause'), registryHost: registry.host, cniBinDir: world.containerdCniBinDir(), cniConfDir: world.cniConfDir } } : {},
      );
      if (options.berthCri !== false) await world.startCri();
      return world;
    } catch (err) {
      await world.containerd?.stop();
      await registry.stop();
      rmSync(world.dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** containerd's CRI also runs `loopback` for lo: berth's plugins plus the reference loopback. */
  private containerdCniBinDir(): string {
    const dir = join(this.dir, 'cni-bin');
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(berthCniDir)) symlinkSync(join(berthCniDir, name), join(dir, name));
    symlinkSync('/usr/lib/cni/loopback', join(dir, 'loopback'));
    return dir;
  }

  /** `127.0.0.1:PORT/berth-test/NAME:TAG` */
  image(name: string, tag = '1'): string {
    return `${this.registry.host}/berth-test/${name}:${tag}`;
  }

  private async prepare(): Promise<void> {
    const images = testImages();
    for (const t of testImageTags(images)) {
      await pushImage(this.registry.host, t.repository, t.tag, t.image ?? { index: t.index!, children: t.children! });
    }
    mkdirSync(this.cniConfDir, { recursive: true });
    mkdirSync(this.podLogDir, { recursive: true });
    const hostsDir = join(this.dir, 'certs.d');
    mkdirSync(join(hostsDir, this.registry.host), { recursive: true });
    writeFileSync(join(hostsDir, this.registry.host, 'hosts.toml'), `server = "http://${this.registry.host}"\n`);
    const mirrors = Object.fromEntries(
      (this.options.mirrored ?? []).map((name) => [name, `server = "https://${name}"\n[host."http://${this.registry.host}"]\n  capabilities = ["pull", "resolve"]\n`]),
    );
    for (const [host, content] of Object.entries({ ...mirrors, ...this.options.hostsToml })) {
      mkdirSync(join(hostsDir, host), { recursive: true });
      writeFileSync(join(hostsDir, host, 'hosts.toml'), content);
    }
    writeFileSync(
      join(this.cniConfDir, '10-berth.conflist'),
      JSON.stringify({
        // containerd 1.6's libcni (the benchmark's peer) reads results up to 1.0.0.
        cniVersion: '1.0.0',
        name: 'berth-test',
        plugins: [
          {
            type: 'berth-bridge',
            bridge: this.bridge,
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: { type: 'berth-host-local', ranges: [[{ subnet: this.subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(this.dir, 'ipam') },
          },
          { type: 'berth-portmap', capabilities: { portMappings: true }, snat: true },
          ...(this.options.chained ?? []),
        ],
      }),
    );
  }

  /** Start (or restart) berth-cri against this world. */
  async startCri(): Promise<void> {
    const socket = join(this.containerd.dir, 'berth-cri.sock');
    const logFile = join(this.dir, 'berth-cri.log');
    const binary = join(repoRoot, 'dist', 'bin', 'berth-cri');
    if (!existsSync(binary)) throw new Error(`${binary} is missing: run node scripts/build.mjs`);
    // A killed berth-cri leaves its socket file: wait for the new one, not the old.
    rmSync(socket, { force: true });
    const log = openSync(logFile, 'a');
    const child = spawn(
      process.execPath,
      [
        // e.g. BERTH_CRI_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile berth-cri in a test or bench.
        ...daemonNodeFlags,
        ...(process.env.BERTH_CRI_NODE_ARGS ?? '').split(' ').filter(Boolean),
        binary,
        '--listen', `unix://${socket}`,
        '--containerd', this.containerd.socket,
        '--containerd-state', this.containerd.state,
        '--root', join(this.dir, 'root'),
        '--state', join(this.dir, 'state'),
        '--registry-config-dir', join(this.dir, 'certs.d'),
        '--cni-conf-dir', this.cniConfDir,
        '--cni-bin-dir', berthCniDir,
        '--cni-cache-dir', join(this.dir, 'cni-cache'),
        '--sandbox-image', this.image('pause'),
        // runc/crun state per world, so a world that dies leaves nothing in /run/containerd/runc.
        '--config', this.criConfigFile(),
        '--log-level', 'debug',
        ...(this.options.flags ?? []),
      ],
      { stdio: ['ignore', log, log], env: { ...process.env, BERTH_CNI_SOCKET: this.cnidSocket ?? join(this.dir, 'no-cnid.sock') } },
    );
    closeSync(log);
    this.cri = { socket, logFile, child };
    for (let i = 0; i < 200 && !existsSync(socket); i++) {
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    if (!existsSync(socket)) throw new Error(`berth-cri did not start:\n${this.criLog().slice(-3000)}`);
    this.connect(socket);
  }

  /**
   * The settings berth-cri's flags above give, as its config file (or berthd's cri section)
   * takes them, serving on `socket`.
   */
  criSettings(socket: string): Record<string, unknown> {
    return {
      listen: `unix://${socket}`,
      containerd: this.containerd.socket,
      containerdState: this.containerd.state,
      root: join(this.dir, 'root'),
      state: join(this.dir, 'state'),
      registryConfigDir: join(this.dir, 'certs.d'),
      cniConfDir: this.cniConfDir,
      cniBinDir: [berthCniDir],
      cniCacheDir: join(this.dir, 'cni-cache'),
      sandboxImage: this.image('pause'),
      runtimeHandlers: { runc: { binary: 'runc', root: join(this.dir, 'runc') }, crun: { binary: 'crun', root: join(this.dir, 'crun') } },
    };
  }

  /** (Re)connect the runtime and image clients to a CRI serving on `socket`. */
  connect(socket: string): void {
    for (const c of this.clients) c.close();
    const opts = { 'grpc.max_receive_message_length': maxMessageBytes };
    const rs = new RuntimeServiceClient(`unix://${socket}`, credentials.createInsecure(), opts);
    const is = new ImageServiceClient(`unix://${socket}`, credentials.createInsecure(), opts);
    this.clients = [rs, is];
    this.runtime = promisify(rs, runtimeMethods);
    this.images = promisify(is, imageMethods);
  }

  private criConfigFile(): string {
    const file = join(this.dir, 'cri.yaml');
    writeFileSync(
      file,
      [
        'runtimeHandlers:',
        `  runc: { binary: runc, root: ${join(this.dir, 'runc')} }`,
        `  crun: { binary: crun, root: ${join(this.dir, 'crun')} }`,
        '',
      ].join('\n'),
    );
    return file;
  }

  criLog(): string {
    try {
      return readFileSync(this.cri.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** kill -9 berth-cri (containers keep running under their shims). */
  criRunning(): boolean {
    return !!this.cri && this.cri.child.exitCode === null && this.cri.child.signalCode === null;
  }

  async killCri(): Promise<void> {
    if (!this.criRunning()) return;
    const exited = new Promise((resolve) => this.cri.child.once('exit', resolve));
    this.cri.child.kill('SIGKILL');
    await exited;
  }

  /** Remove every pod through berth-cri, so CNI DEL undoes the host side (rules, veths). */
  async removeAllPods(): Promise<void> {
    const { items } = await this.runtime.listPodSandbox({ filter: undefined });
    for (const pod of items) await this.runtime.removePodSandbox({ podSandboxId: pod.id });
  }

  /**
   * Keys of the active (container rootfs) snapshots in berth-cri's namespace, once none is left
   * or `waitMs` has passed: RemoveContainer lets the snapshot removal finish after its reply.
   * Rootfs snapshots berth-cri prepared ahead (spareSnapshots) are not counted.
   */
  async activeSnapshots(waitMs = 5000): Promise<string[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const out = execFileSync('ctr', ['-a', this.containerd.socket, '-n', 'berth.io', 'snapshots', 'ls'], { encoding: 'utf8' });
      const spares = new Set(this.spareSnapshots());
      const active = out.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.at(-1) === 'Active' && !spares.has(f[0]!)).map((f) => f[0]!);
      if (active.length === 0 || Date.now() > deadline) return active;
      await sleep(100);
    }
  }

  /** Keys of the container rootfs snapshots berth-cri holds prepared ahead (world/containerd.ts). */
  spareSnapshots(): string[] {
    return spareSnapshotKeys(this.containerd.socket);
  }

  /** Container FIFOs left in berth-cri's state dir, once none is left or `waitMs` has passed. */
  async leftoverFifos(waitMs = 5000): Promise<string[]> {
    const dir = join(this.dir, 'state', 'io');
    const deadline = Date.now() + waitMs;
    for (;;) {
      const left = existsSync(dir) ? readdirSync(dir) : [];
      if (left.length === 0 || Date.now() > deadline) return left;
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    if (this.criRunning()) await this.removeAllPods().catch(() => undefined);
    for (const c of this.clients) c.close();
    await this.killCri();
    await this.containerd?.stop();
    // Whatever berth-cri could not undo (it died, a test broke it): DEL every attachment still in
    // the CNI cache and GC the network's rules, then unmount the pods' shm.
    try {
      const list = parseNetworkList(readFileSync(join(this.cniConfDir, '10-berth.conflist'), 'utf8'));
      await new CniRunner([berthCniDir], { cacheDir: join(this.dir, 'cni-cache') }).gc(list, []);
    } catch (err) {
      console.log(`CRI world cleanup: CNI GC failed: ${(err as Error).message}`);
    }
    unmountUnder(this.dir);
    await this.registry.stop();
    // What the pods' network left on the host: the bridge and the portmap/masquerade rules.
    trySh('ip', ['link', 'del', this.bridge]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
