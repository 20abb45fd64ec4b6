import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from './cni.js';
import { unmountUnder } from './containerd.js';
import { trySh } from './netns.js';
import { boxCgroups, removeCgroupTree, writableScript, writableUnit, type BoxCgroup } from './node-box-cgroups.js';

// A booted Debian 12 node with systemd as PID 1, for testing berth's units and installer the way
// an operator's node runs them. PID 1 on these machines is not systemd, so the node is a
// systemd-nspawn container (no registration, no scope unit: there is no systemd on the host) in
// a network namespace of its own, on a root filesystem built once with mmdebstrap with every
// package the node needs baked in (the node never reaches a network). What the node makes (its
// bridges, rules, mounts, loop devices, cgroups) stays inside it or is removed by destroy().
// See /work/shared/notes/node-box.md for what was checked by hand. Not importing vitest.

/** The packages baked into the image: the node has no network to fetch anything later. */
export const nodePackages = [
  'systemd', 'systemd-sysv', 'dbus', 'iproute2', 'ca-certificates', 'kmod', 'procps',
  'containerd', 'runc', 'iptables', 'nftables', 'xfsprogs', 'e2fsprogs', 'util-linux', 'curl',
] as const;

const suite = 'bookworm';
const cacheRoot = join(repoRoot, '.cache', 'node-box');
const boxesDir = join(cacheRoot, 'boxes');
/** PATH inside the node (nsenter keeps the caller's environment otherwise). */
const nodePath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  /** Do not throw on a non-zero exit. */
  allowFailure?: boolean;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface NodeBoxOptions {
  /** Bound read-only at /opt/berth-dist: the checkout's dist/ by default, or an unpacked release. */
  distDir?: string;
  /** Progress lines (image build time, boot time); silent by default. */
  log?: (line: string) => void;
}

/** What destroy() needs, kept on disk so a box left by a killed test run can be swept later. */
interface BoxState {
  name: string;
  ownerPid: number;
  netns: string;
  hostLink: string;
  cgroups: BoxCgroup[];
}

/** Why a node box cannot run here, or undefined. */
export function nodeBoxSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'the node box needs root (network namespaces, systemd-nspawn)';
  for (const tool of ['mmdebstrap', 'systemd-nspawn', 'nsenter', 'ip', 'losetup']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) {
      return `${tool} is not installed (apt-get install mmdebstrap systemd-container; scripts/bootstrap.sh lists them)`;
    }
  }
  if (!existsSync('/sys/fs/cgroup/systemd') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no systemd-compatible cgroup hierarchy is mounted';
  return undefined;
}

function run(command: string, args: readonly string[], options: ExecOptions & { spawnEnv?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: options.spawnEnv ?? process.env, timeout: options.timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const result = { code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      if (result.code !== 0 && !options.allowFailure) {
        reject(new Error(`${command} ${args.join(' ')}: ${signal ? `killed by ${signal}` : `exit ${result.code}`}\n${result.stderr.trim().slice(-2000)}`));
      } else resolve(result);
    });
    if (child.stdin) {
      // A command that exits without reading its input is not an error of ours.
      child.stdin.on('error', () => {});
      child.stdin.end(options.input);
    }
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove a directory tree that may hold mounts (a killed build's /proc, a box's leftovers) without crossing into them. */
function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  unmountUnder(dir);
  trySh('rm', ['-rf', '--one-file-system', dir]);
}

/** The image's directory: named after everything that decides its content, so a changed list builds a new one. */
export function nodeImageDir(): string {
  const hash = createHash('sha256').update(JSON.stringify({ suite, variant: 'minbase', packages: [...nodePackages].sort() })).digest('hex').slice(0, 12);
  return join(cacheRoot, `rootfs-${hash}`);
}

/** Builds killed half-way (their owner's pid is gone) leave a temp dir, maybe with mounts in it. */
function sweepStaleBuilds(): void {
  if (!existsSync(cacheRoot)) return;
  for (const entry of readdirSync(cacheRoot)) {
    const m = /^\.build-[0-9a-f]+-(\d+)-[0-9a-f]+$/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) removeTree(join(cacheRoot, entry));
  }
}

let imageBuild: Promise<string> | undefined;

/** One booted node: its directory, network, nspawn process and cgroups. */
export class NodeBox {
  /** The host side of the box: its root filesystem is `${dir}/root`. */
  readonly dir: string;
  readonly root: string;
  readonly netns: string;
  readonly hostLink: string;
  /** The host's end of the veth (a /30): reachable from the node, e.g. for a registry. */
  readonly hostAddress: string;
  readonly nodeAddress: string;
  private nspawn?: ChildProcess;
  private nspawnExit?: Promise<void>;
  private pid1Value?: number;
  private cgroups: BoxCgroup[] = [];
  private readonly distDir: string;
  private readonly log: (line: string) => void;

  private constructor(readonly name: string, options: NodeBoxOptions, state?: BoxState) {
    this.dir = join(boxesDir, name);
    this.root = join(this.dir, 'root');
    this.netns = state?.netns ?? name;
    this.hostLink = state?.hostLink ?? `nbh${name.slice(-6)}`;
    this.cgroups = state?.cgroups ?? [];
    const net = vethNetwork();
    this.hostAddress = `${net}.1`;
    this.nodeAddress = `${net}.2`;
    this.distDir = options.distDir ?? join(repoRoot, 'dist');
    this.log = options.log ?? (() => {});
  }

  /**
   * The root filesystem, built once (mmdebstrap, the machine's own apt sources) into
   * .cache/node-box/rootfs-<hash>. It is built in a temp dir and renamed when complete, so a
   * killed or concurrent build never leaves a directory that looks like a finished image.
   */
  static image(log: (line: string) => void = () => {}): Promise<string> {
    imageBuild ??= NodeBox.buildImage(log).finally(() => (imageBuild = undefined));
    return imageBuild;
  }

  private static async buildImage(log: (line: string) => void): Promise<string> {
    const dir = nodeImageDir();
    if (existsSync(dir)) return dir;
    mkdirSync(cacheRoot, { recursive: true });
    sweepStaleBuilds();
    const tmp = join(cacheRoot, `.build-${dir.slice(dir.lastIndexOf('-') + 1)}-${process.pid}-${randomBytes(3).toString('hex')}`);
    const started = Date.now();
    log(`node-box: building the image with mmdebstrap (${suite}, ${nodePackages.length} packages) into ${dir}`);
    try {
      const r = await run('mmdebstrap', ['--variant=minbase', `--include=${nodePackages.join(',')}`, suite, tmp], { allowFailure: true, timeoutMs: 900_000 });
      if (r.code !== 0) throw new Error(`mmdebstrap failed (exit ${r.code}):\n${(r.stderr + r.stdout).trim().slice(-3000)}`);
      try {
        renameSync(tmp, dir);
      } catch (err) {
        // Another build finished first: its image is as good as ours.
        if (!existsSync(dir)) throw err;
        removeTree(tmp);
      }
    } catch (err) {
      removeTree(tmp);
      throw err;
    }
    log(`node-box: image built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return dir;
  }

  /** A fresh node from the image, booted, with systemd running and its kernel interfaces writable. */
  static async boot(options: NodeBoxOptions = {}): Promise<NodeBox> {
    const log = options.log ?? (() => {});
    NodeBox.sweepStaleBoxes();
    const image = await NodeBox.image(log);
    const box = new NodeBox(`nb-${process.pid % 1000}${randomBytes(3).toString('hex')}`, options);
    try {
      const started = Date.now();
      mkdirSync(box.dir, { recursive: true });
      // cp -a of the ~400 MB image takes ~2 s here. An overlayfs with the image as lower dir
      // mounts instantly, but the node's containerd then cannot use its overlayfs snapshotter
      // (an overlay's upper dir may not be on overlayfs), so the node gets a real copy.
      await run('cp', ['-a', image, box.root]);
      box.cgroups = boxCgroups(box.name);
      box.saveState();
      box.installWritableUnit();
      box.log(`node-box: ${box.name} copied in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await box.start();
      return box;
    } catch (err) {
      await box.destroy();
      throw err;
    }
  }

  /** Boxes whose test process died before destroy(): remove them as destroy() would. */
  static sweepStaleBoxes(): void {
    if (!existsSync(boxesDir)) return;
    for (const entry of readdirSync(boxesDir)) {
      let state: BoxState;
      try {
        state = JSON.parse(readFileSync(join(boxesDir, entry, 'box.json'), 'utf8')) as BoxState;
      } catch {
        continue;
      }
      if (pidAlive(state.ownerPid)) continue;
      new NodeBox(state.name, {}, state).teardown();
    }
  }

  private saveState(): void {
    const state: BoxState = { name: this.name, ownerPid: process.pid, netns: this.netns, hostLink: this.hostLink, cgroups: this.cgroups };
    writeFileSync(join(this.dir, 'box.json'), JSON.stringify(state, null, 2));
  }

  /**
   * nspawn hands the node /proc/sys, /sys and the cgroup v1 controllers read-only; containers
   * and CNI need them writable. A unit early in boot fixes that (on every boot, before
   * containerd and berth start), each controller showing only this box's own subtree.
   */
  private installWritableUnit(): void {
    const lib = join(this.root, 'usr', 'local', 'lib', 'node-box');
    mkdirSync(lib, { recursive: true });
    writeFileSync(join(lib, 'writable.sh'), writableScript(this.cgroups), { mode: 0o755 });
    writeFileSync(join(this.root, 'etc', 'systemd', 'system', 'node-box-writable.service'), writableUnit);
    const wants = join(this.root, 'etc', 'systemd', 'system', 'sysinit.target.wants');
    mkdirSync(wants, { recursive: true });
    trySh('ln', ['-sf', '../node-box-writable.service', join(wants, 'node-box-writable.service')]);
  }

  /** The private network: lo up, a veth to the host with a /30, default route via the host end. */
  private setUpNetwork(): void {
    const must = (args: string[]): void => {
      const r = trySh('ip', args);
      if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
    };
    must(['netns', 'add', this.netns]);
    must(['-n', this.netns, 'link', 'set', 'lo', 'up']);
    must(['link', 'add', this.hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.netns]);
    must(['addr', 'add', `${this.hostAddress}/30`, 'dev', this.hostLink]);
    must(['link', 'set', this.hostLink, 'up']);
    must(['-n', this.netns, 'addr', 'add', `${this.nodeAddress}/30`, 'dev', 'eth0']);
    must(['-n', this.netns, 'link', 'set', 'eth0', 'up']);
    must(['-n', this.netns, 'route', 'add', 'default', 'via', this.hostAddress]);
  }

  private tearDownNetwork(): void {
    if (existsSync(`/run/netns/${this.netns}`)) trySh('ip', ['netns', 'del', this.netns]);
    trySh('ip', ['link', 'del', this.hostLink]);
  }

  /** Start nspawn on the box's root and wait for systemd to finish booting. */
  private async start(): Promise<void> {
    if (!existsSync(`/run/netns/${this.netns}`)) this.setUpNetwork();
    const started = Date.now();
    const logFile = join(this.dir, 'nspawn.log');
    const log = openSync(logFile, 'a');
    const args = [
      `--net=/run/netns/${this.netns}`,
      'systemd-nspawn', '--register=no', '--keep-unit', '-b', '-D', this.root, `--machine=${this.name}`,
      '--capability=all', '--system-call-filter=@mount @privileged keyctl',
      // CSI volumes: loop-control hands out free devices; berth makes the /dev/loopN node itself.
      '--bind=/dev/loop-control',
      `--bind-ro=${this.distDir}:/opt/berth-dist`,
      '--console=read-only',
    ];
    // The wrapper shell moves itself into the box's own cgroups first, so everything the node
    // starts stays under them (and under the test runner's own cgroup), never in the host's.
    const procs = this.cgroups.map((c) => join(c.hostDir, 'cgroup.procs')).join(' ');
    const child = spawn('sh', ['-c', 'for f in $NODE_BOX_CGROUPS; do echo $$ > "$f" || exit 125; done; exec nsenter "$@"', 'node-box', ...args], {
      stdio: ['ignore', log, log],
      env: { ...process.env, NODE_BOX_CGROUPS: procs },
    });
    closeSync(log);
    this.nspawn = child;
    this.pid1Value = undefined;
    this.nspawnExit = new Promise((resolve) => child.once('exit', () => resolve()));
    const failed = (why: string): Error => new Error(`node box ${this.name}: ${why}\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw failed(`systemd-nspawn exited (${child.exitCode ?? child.signalCode})`);
      this.pid1Value = child.pid ? findInit(child.pid) : undefined;
      if (this.pid1Value) {
        const r = await this.exec(['systemctl', 'is-system-running'], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
        const state = r?.stdout.trim();
        if (state === 'running' || state === 'degraded') break;
      }
      if (Date.now() - started > 120_000) throw failed('systemd did not finish booting within 120 s');
      await sleep(200);
    }
    // The unit did it at boot; running the (idempotent) script again checks it worked.
    await this.exec(['sh', '/usr/local/lib/node-box/writable.sh']);
    this.log(`node-box: ${this.name} booted in ${((Date.now() - started) / 1000).toFixed(1)} s (PID 1 is ${this.pid1Value} on the host)`);
  }

  /** The node's PID 1 as the host sees it. */
  get pid1(): number {
    if (!this.pid1Value) throw new Error(`node box ${this.name} is not running`);
    return this.pid1Value;
  }

  get running(): boolean {
    return !!this.nspawn && this.nspawn.exitCode === null && this.nspawn.signalCode === null;
  }

  /**
   * A path inside the running node as the host can open it, including the node's own tmpfs
   * mounts (/run): through its PID 1's root. Short enough for a unix socket.
   */
  hostPath(pathInNode: string): string {
    return `/proc/${this.pid1}/root${pathInNode.startsWith('/') ? '' : '/'}${pathInNode}`;
  }

  /** Run a command inside the node (all its namespaces, its root, PATH set); throws on failure unless allowFailure. */
  exec(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const env = { PATH: nodePath, LANG: 'C.UTF-8', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0', TERM: 'dumb', ...options.env };
    return run('nsenter', ['-t', String(this.pid1), '-a', ...args], { ...options, spawnEnv: env });
  }

  /** A shell script inside the node; its stdout, or a failure with stderr. */
  async sh(script: string, options: ExecOptions = {}): Promise<string> {
    return (await this.exec(['sh', '-ec', script], options)).stdout;
  }

  /** A unit's journal, for failure messages. */
  async journal(unit: string, lines = 80): Promise<string> {
    const r = await this.exec(['journalctl', '-u', unit, '-n', String(lines), '--no-pager', '-o', 'short-precise'], { allowFailure: true });
    return r.stdout + r.stderr;
  }

  /** `systemctl poweroff` inside, then wait for nspawn to exit (the directory is busy until then). */
  async poweroff(timeoutMs = 90_000): Promise<void> {
    if (!this.running) return;
    await this.exec(['systemctl', 'poweroff'], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
    if (await Promise.race([this.nspawnExit!.then(() => true), sleep(timeoutMs).then(() => false)])) return;
    this.kill();
    await this.nspawnExit;
    throw new Error(`node box ${this.name} did not power off within ${timeoutMs} ms (killed)`);
  }

  /**
   * Boot the same directory again, as a rebooted machine: the network namespace is made anew
   * (a reboot loses every link, route and rule), the disk keeps what the node wrote.
   */
  async bootAgain(): Promise<void> {
    if (this.running) await this.poweroff();
    this.tearDownNetwork();
    await this.start();
  }

  private kill(): void {
    // SIGKILL of a PID namespace's init kills every process in it, containers included.
    if (this.pid1Value) {
      try {
        process.kill(this.pid1Value, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (this.running) this.nspawn!.kill('SIGKILL');
  }

  /** Remove everything: the node's processes, the loop devices it attached, its cgroups, netns, veth and directory. */
  async destroy(): Promise<void> {
    if (this.running) {
      this.kill();
      await Promise.race([this.nspawnExit, sleep(30_000)]);
    }
    this.teardown();
  }

  private teardown(): void {
    // Processes left in the box's cgroups (a box swept after its owner died): kill them first.
    for (const c of this.cgroups) killCgroupTree(c.hostDir);
    detachLoopsUnder(this.root);
    unmountUnder(this.dir);
    for (const c of this.cgroups) removeCgroupTree(c.hostDir);
    this.tearDownNetwork();
    removeTree(this.dir);
  }

  /** Loop devices attached to files inside the node. */
  loops(): string[] {
    return loopsUnder(this.root).map((l) => l.name);
  }
}

/**
 * The first three octets of the veth's /30 (host .1, node .2): from 10.250-254, clear of the
 * ranges other worlds use (CRI pods 10.100-199, overlay underlays 10.213, pods 10.244), and of
 * any /24 the host already has an address or route in.
 */
function vethNetwork(): string {
  const taken = trySh('ip', ['-4', '-o', 'route', 'show', 'table', 'all']).stdout + trySh('ip', ['-4', '-o', 'addr', 'show']).stdout;
  for (;;) {
    const [a, b] = randomBytes(2);
    const net = `10.${250 + (a! % 5)}.${b!}`;
    if (!taken.includes(`${net}.`)) return net;
  }
}

/** The container's init: the nspawn process's child that is PID 1 of its own namespace. */
function findInit(nspawnPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== nspawnPid) continue;
      const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
      if (nspid && nspid.length > 1 && nspid.at(-1) === '1') return Number(entry);
    } catch {
      /* exited meanwhile */
    }
  }
  return undefined;
}

interface LoopEntry {
  name: string;
  'back-file'?: string;
  'back-ino'?: number | string;
  'back-maj:min'?: string;
}

/**
 * The kernel reports a loop's backing file by the path the node saw (its own root), so loops are
 * matched by the file's device and inode under the box's root instead.
 */
function loopsUnder(root: string): LoopEntry[] {
  const r = trySh('losetup', ['--list', '--json', '-O', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN']);
  if (r.code !== 0 || !r.stdout.trim()) return [];
  const loops = (JSON.parse(r.stdout) as { loopdevices: LoopEntry[] }).loopdevices;
  return loops.filter((l) => {
    const file = l['back-file']?.replace(/ \(deleted\)$/, '');
    if (!file) return false;
    try {
      const st = statSync(join(root, file));
      const [major, minor] = (l['back-maj:min'] ?? '').trim().split(':').map(Number);
      const devMajor = Math.floor(st.dev / 256) & 0xfff;
      const devMinor = st.dev & 0xff;
      return Number(l['back-ino']) === st.ino && major === devMajor && minor === devMinor;
    } catch {
      return false;
    }
  });
}

function detachLoopsUnder(root: string): void {
  for (const l of loopsUnder(root)) trySh('losetup', ['-d', l.name]);
}

function killCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  const walk = (d: string): void => {
    try {
      for (const pid of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      /* removed meanwhile */
    }
  };
  walk(dir);
}
