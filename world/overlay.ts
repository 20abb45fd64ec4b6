import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { networkCidr, parseCidr } from '../lib/ip.js';
import { berthCniDir, repoRoot, runCni, type CniOutcome } from './cni.js';
import { EtcdWorld } from './etcd.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { sh, trySh, uniqueName } from './netns.js';
import { daemonNodeFlags } from '../lib/node-flags.js';

// A small cluster on one machine for the overlay: an underlay bridge in the root namespace
// (address .1, where etcd also listens), and "nodes" that are network namespaces plugged into
// it by a veth (eth0, address .10+i, default route via .1). Each node runs its own
// berth-overlayd (entering only the network namespace) with its own subnet file, lease file and
// CNI data; pods are network namespaces wired by berth-overlay run inside their node's
// namespace, as a runtime on that node would. Not importing vitest; the bench uses it too.

export const defaultNetworkConfig = { Network: '10.244.0.0/16', SubnetLen: 24, Backend: { Type: 'vxlan', VNI: 1 } };

/** Poll `ok` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface OverlayWorldOptions {
  /** Underlay prefix, three octets (default: a random 10.213.N). */
  underlay?: string;
  /** MTU of the underlay veths (default 1500). */
  underlayMtu?: number;
  /** Extra berth-overlayd flags for every node. */
  overlaydArgs?: string[];
  networkConfig?: object;
  /** The lease store (default etcd): etcd from Debian, a fake Kubernetes API, or the file store. */
  store?: 'etcd' | 'kube' | 'file';
  /**
   * Give the underlay IPv6 too (for dual-stack overlays): with the default underlay, the bridge
   * fd13:213:0::1/64, node i fd13:213:0::(10+i)/64 (other underlays: fd13:<octet 2>:<octet 3>::),
   * and an IPv6 default route via the bridge. Addresses skip DAD so they are usable at once.
   */
  ipv6Underlay?: boolean;
}

export interface Pod {
  name: string;
  netns: string;
  ip: string;
  /** The pod's IPv6 address when the network is dual-stack. */
  ipv6?: string;
  containerId: string;
}

export class OverlayNode {
  proc?: ChildProcess;
  private output = '';
  private exited?: Promise<number | null>;
  readonly pods: Pod[] = [];

  constructor(
    private readonly world: OverlayWorld,
    readonly index: number,
    readonly netnsName: string,
    readonly address: string,
    readonly dir: string,
    /** The node's underlay IPv6 address (ipv6Underlay worlds only). */
    readonly addressV6?: string,
  ) {}

  get netns(): string {
    return `/run/netns/${this.netnsName}`;
  }

  /** The node's name (the kube store's Node object). */
  get name(): string {
    return `node${this.index}`;
  }

  get subnetFile(): string {
    return join(this.dir, 'subnet.env');
  }

  get healthzAddr(): string {
    return `${this.address}:9403`;
  }

  log(): string {
    return this.output;
  }

  /** Run a command in the node's network namespace. */
  exec(cmd: string, args: string[]): { code: number; stdout: string; stderr: string } {
    return trySh('nsenter', [`--net=${this.netns}`, cmd, ...args]);
  }

  /** Start berth-overlayd in this node; resolves once /readyz answers 200. */
  async start(extraArgs: string[] = []): Promise<void> {
    const args = [
      `--net=${this.netns}`,
      process.execPath,
      ...daemonNodeFlags,
      join(repoRoot, 'dist/bin/berth-overlayd'),
      '--subnet-file',
      this.subnetFile,
      '--lease-file',
      join(this.dir, 'lease.json'),
      '--healthz-addr',
      this.healthzAddr,
      '--resync-interval',
      '1s',
      ...this.world.storeArgs(this),
      ...(this.world.options.overlaydArgs ?? []),
      ...extraArgs,
    ];
    this.output = '';
    const proc = spawn('nsenter', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BERTH_LOG_LEVEL: process.env.BERTH_LOG_LEVEL ?? 'info' } });
    this.proc = proc;
    proc.stdout!.on('data', (b: Buffer) => (this.output += b.toString()));
    proc.stderr!.on('data', (b: Buffer) => (this.output += b.toString()));
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`berth-overlayd on node ${this.index} exited with ${proc.exitCode}: ${this.output.slice(-2000)}`);
      if (this.readyz() === 200) return;
      if (Date.now() > deadline) throw new Error(`berth-overlayd on node ${this.index} not ready after 20 s: ${this.output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** HTTP status of /readyz (0 when nothing answers). */
  readyz(): number {
    const r = trySh('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', `http://${this.healthzAddr}/readyz`]);
    return Number(r.stdout) || 0;
  }

  metrics(): string {
    return trySh('curl', ['-s', '--max-time', '2', `http://${this.healthzAddr}/metrics`]).stdout;
  }

  /** SIGTERM (clean stop) or SIGKILL; resolves when the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.proc || this.proc.exitCode !== null) return this.proc?.exitCode ?? null;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc?.kill('SIGKILL'), 10_000);
    try {
      return await this.exited!;
    } finally {
      clearTimeout(timer);
    }
  }

  subnetEnv(): Record<string, string> {
    return Object.fromEntries(
      readFileSync(this.subnetFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  }

  /** The node's pod subnet as a network CIDR (10.244.3.0/24). */
  subnet(): string {
    const [ip, len] = this.subnetEnv().BERTH_SUBNET!.split('/');
    return `${ip!.replace(/\.\d+$/, '.0')}/${len}`;
  }

  /** The node's IPv6 pod subnet as a network CIDR (fd00:10:244:3::/64), from BERTH_IPV6_SUBNET. */
  ipv6Subnet(): string {
    return networkCidr(parseCidr(this.subnetEnv().BERTH_IPV6_SUBNET!));
  }

  /** Routes of the node (IPv4, or IPv6 with family 6), `ip -j route` objects. */
  routes(family: 4 | 6 = 4): { dst: string; gateway?: string; dev: string; flags: string[] }[] {
    return JSON.parse(this.exec('ip', [`-${family}`, '-j', 'route', 'show']).stdout || '[]') as { dst: string; gateway?: string; dev: string; flags: string[] }[];
  }

  private cniConf(): object {
    return {
      cniVersion: '1.0.0',
      name: 'berth-overlay-test',
      type: 'berth-overlay',
      subnetFile: this.subnetFile,
      dataDir: join(this.dir, 'cni'),
      delegate: { bridge: 'cni0' },
      ipam: { dataDir: join(this.dir, 'ipam') },
    };
  }

  /** Add a pod (a new network namespace) through berth-overlay; returns it with its address. */
  async addPod(): Promise<Pod> {
    const name = uniqueName('bop-');
    sh('ip', ['netns', 'add', name]);
    this.world.remember(() => trySh('ip', ['netns', 'del', name]));
    const pod: Pod = { name, netns: `/run/netns/${name}`, containerId: `ctr-${name}`, ip: '' };
    const out = await this.cniRun('ADD', pod);
    if (out.code !== 0) throw new Error(`berth-overlay ADD on node ${this.index} failed (${out.code}): ${out.stdout} ${out.stderr}`);
    const ips = ((out.json?.ips as { address: string }[] | undefined) ?? []).map((a) => a.address.split('/')[0]!);
    pod.ip = ips.find((a) => !a.includes(':'))!;
    const v6 = ips.find((a) => a.includes(':'));
    if (v6) pod.ipv6 = v6;
    this.pods.push(pod);
    return pod;
  }

  async delPod(pod: Pod): Promise<void> {
    const out = await this.cniRun('DEL', pod);
    if (out.code !== 0) throw new Error(`berth-overlay DEL on node ${this.index} failed (${out.code}): ${out.stdout} ${out.stderr}`);
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  /** CNI through berth-overlay, run in this node's network namespace as its runtime would. */
  private cniRun(command: string, pod: { netns: string; containerId: string }): Promise<CniOutcome> {
    const call = { command, containerId: pod.containerId, netns: pod.netns, ifname: 'eth0', path: berthCniDir, env: { BERTH_NODE_NETNS: this.netns } };
    return runCni(this.world.cniWrapper, call, this.cniConf());
  }
}

export class OverlayWorld {
  readonly nodes: OverlayNode[] = [];
  readonly bridge = uniqueName('bou');
  readonly dir = mkdtempSync(join(tmpdir(), 'berth-overlay-'));
  etcd?: EtcdWorld;
  kube?: FakeKubeApi;
  private readonly cleanups: (() => void)[] = [];
  private readonly prefix: string;
  readonly networkConfigFile: string;
  readonly cniWrapper: string;

  private constructor(readonly options: OverlayWorldOptions) {
    // A random /24 of 10.213/16, so worlds (a test, a bench, the demo) can exist side by side.
    this.prefix = options.underlay ?? `10.213.${Math.floor(Math.random() * 256)}`;
    this.networkConfigFile = join(this.dir, 'net-conf.json');
    // runCni spawns one executable with CNI_* set; this one enters the node and runs the plugin.
    this.cniWrapper = join(this.dir, 'berth-overlay-in-node.sh');
    writeFileSync(this.cniWrapper, `#!/bin/sh\nexec nsenter --net="$BERTH_NODE_NETNS" ${join(berthCniDir, 'berth-overlay')}\n`, { mode: 0o755 });
    writeFileSync(this.networkConfigFile, JSON.stringify(options.networkConfig ?? defaultNetworkConfig));
  }

  get gateway(): string {
    return `${this.prefix}.1`;
  }

  /** The IPv6 underlay prefix (ipv6Underlay), derived from the IPv4 one so parallel worlds differ. */
  get prefixV6(): string {
    const [, b, c] = this.prefix.split('.');
    // Written as the kernel and iproute2 print it (fd13:213::, not fd13:213:0::).
    return c === '0' ? `fd13:${b}::` : `fd13:${b}:${c}::`;
  }

  get gatewayV6(): string {
    return `${this.prefixV6}1`;
  }

  /** The underlay bridge and etcd (listening on 127.0.0.1 and the bridge address). */
  static async start(options: OverlayWorldOptions = {}): Promise<OverlayWorld> {
    const w = new OverlayWorld(options);
    try {
      sh('ip', ['link', 'add', w.bridge, 'type', 'bridge']);
      w.remember(() => trySh('ip', ['link', 'del', w.bridge]));
      sh('ip', ['addr', 'add', `${w.gateway}/24`, 'dev', w.bridge]);
      if (options.ipv6Underlay) sh('ip', ['-6', 'addr', 'add', `${w.gatewayV6}/64`, 'dev', w.bridge, 'nodad']);
      sh('ip', ['link', 'set', w.bridge, 'up']);
      const store = options.store ?? 'etcd';
      if (store === 'etcd') w.etcd = await EtcdWorld.start({ extraListenAddresses: [w.gateway] });
      if (store === 'kube') {
        w.kube = await new FakeKubeApi().start(w.gateway);
        w.kube.writeKubeconfig(join(w.dir, 'kubeconfig'));
      }
      return w;
    } catch (err) {
      await w.stop();
      throw err;
    }
  }

  /** A world with `count` nodes, berth-overlayd started on each and one pod per node. */
  static async cluster(count: number, options: OverlayWorldOptions = {}): Promise<{ world: OverlayWorld; nodes: OverlayNode[]; pods: Pod[] }> {
    const world = await OverlayWorld.start(options);
    try {
      const nodes = Array.from({ length: count }, () => world.addNode());
      for (const n of nodes) await n.start();
      const pods: Pod[] = [];
      for (const n of nodes) pods.push(await n.addPod());
      return { world, nodes, pods };
    } catch (err) {
      await world.stop();
      throw err;
    }
  }

  remember(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** etcd as the nodes reach it (over the underlay). */
  get etcdEndpoint(): string {
    const port = new URL(this.etcd!.endpoints[0]!).port;
    return `http://${this.gateway}:${port}`;
  }

  storeArgs(node: OverlayNode): string[] {
    if (this.options.store === 'file') return ['--lease-store', 'file', '--network-config', this.networkConfigFile];
    if (this.options.store === 'kube') return ['--lease-store', 'kube', '--kubeconfig', join(this.dir, 'kubeconfig'), '--node-name', node.name, '--network-config', this.networkConfigFile];
    return ['--lease-store', 'etcd', '--etcd-endpoints', this.etcdEndpoint, '--network-config', this.networkConfigFile];
  }

  /** A node namespace on the underlay (no overlayd yet). */
  addNode(): OverlayNode {
    const i = this.nodes.length + 1;
    const name = uniqueName('bon-');
    const address = `${this.prefix}.${10 + i}`;
    sh('ip', ['netns', 'add', name]);
    this.remember(() => trySh('ip', ['netns', 'del', name]));
    const host = `${this.bridge.slice(0, 9)}n${i}`;
    const mtu = String(this.options.underlayMtu ?? 1500);
    sh('ip', ['link', 'add', host, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', name]);
    this.remember(() => trySh('ip', ['link', 'del', host]));
    sh('ip', ['link', 'set', host, 'master', this.bridge, 'up']);
    const ns = ['-n', name];
    sh('ip', [...ns, 'link', 'set', 'lo', 'up']);
    sh('ip', [...ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    sh('ip', [...ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', [...ns, 'route', 'add', 'default', 'via', this.gateway]);
    let addressV6: string | undefined;
    if (this.options.ipv6Underlay) {
      addressV6 = `${this.prefixV6}${10 + i}`;
      sh('ip', [...ns, '-6', 'addr', 'add', `${addressV6}/64`, 'dev', 'eth0', 'nodad']);
      sh('ip', [...ns, '-6', 'route', 'add', 'default', 'via', this.gatewayV6]);
    }
    const dir = join(this.dir, `node${i}`);
    mkdirSync(dir, { recursive: true });
    const node = new OverlayNode(this, i, name, address, dir, addressV6);
    this.nodes.push(node);
    // With the kube store, the node exists in the API with a podCIDR, as the controller-manager assigns.
    this.kube?.addNode(node.name, [`10.244.${100 + i}.0/24`]);
    return node;
  }

  /** ping from a pod (or node) namespace; true when an answer came back. */
  ping(fromNetns: string, to: string, o: { size?: number; dontFragment?: boolean; count?: number } = {}): boolean {
    // ping picks the family from the address; -6 makes it explicit for IPv6 targets.
    const args = [`--net=${fromNetns}`, 'ping', ...(to.includes(':') ? ['-6'] : []), '-c', String(o.count ?? 1), '-W', '2', '-q'];
    if (o.size !== undefined) args.push('-s', String(o.size));
    if (o.dontFragment) args.push('-M', 'do');
    return trySh('nsenter', [...args, to]).code === 0;
  }

  /**
   * The source address a TCP server in `to` sees for a connection from `from` (NAT shows here).
   * Both ends are Node processes entering only the network namespaces.
   */
  async sourceSeen(from: { netns: string }, to: { netns: string; ip: string }, port = 7799): Promise<string> {
    const server = spawn('nsenter', [`--net=${to.netns}`, process.execPath, '-e', `require('net').createServer((s) => { console.log(s.remoteAddress); s.end(); process.exit(0); }).listen(${port}, '${to.ip}', () => console.log('listening'))`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    server.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise((r) => server.once('exit', r));
    try {
      const deadline = Date.now() + 5000;
      while (!out.includes('listening') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      trySh('nsenter', [`--net=${from.netns}`, process.execPath, '-e', `require('net').connect(${port}, '${to.ip}').on('data', () => undefined).on('error', (e) => { console.error(e.message); process.exit(1); })`]);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      return out.split('\n').find((l) => l && l !== 'listening') ?? '';
    } finally {
      server.kill();
    }
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.stop('SIGKILL').catch(() => undefined);
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        fn();
      } catch {
        // keep cleaning
      }
    }
    await this.etcd?.stop().catch(() => undefined);
    await this.kube?.close().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
