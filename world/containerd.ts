import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spareLeaseLabel } from '../cri-shim/pod/spare-rootfs.js';
import { trySh, uniqueName } from './netns.js';

// A private containerd for tests and benchmarks: its own socket, root and state directories, so
// it never touches (or is touched by) a containerd the host may run. Its CRI plugin is off unless
// asked for (the CRI benchmark compares berth-cri with it, in namespace k8s.io).

export interface ContainerdOptions {
  /** Enable containerd's own CRI plugin, configured for the test world. */
  cri?: { sandboxImage: string; registryHost: string; cniBinDir: string; cniConfDir: string };
}

export interface ContainerdWorld {
  dir: string;
  socket: string;
  root: string;
  state: string;
  logFile: string;
  stop(): Promise<void>;
}

function configToml(dir: string, socket: string, options: ContainerdOptions): string {
  const lines = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
  ];
  if (!options.cri) {
    lines.unshift('disabled_plugins = ["io.containerd.grpc.v1.cri"]');
    return lines.join('\n') + '\n';
  }
  const { sandboxImage, cniBinDir, cniConfDir } = options.cri;
  lines.push(
    '[plugins."io.containerd.grpc.v1.cri"]',
    `  sandbox_image = "${sandboxImage}"`,
    // Root here lacks CAP_SYS_RESOURCE: kubelet's -998 for sandboxes would make runc fail.
    '  restrict_oom_score_adj = true',
    '  disable_apparmor = true',
    '[plugins."io.containerd.grpc.v1.cri".cni]',
    `  bin_dir = "${cniBinDir}"`,
    `  conf_dir = "${cniConfDir}"`,
    '[plugins."io.containerd.grpc.v1.cri".registry]',
    `  config_path = "${dir}/certs.d"`,
  );
  return lines.join('\n') + '\n';
}

/**
 * Keys of the container rootfs snapshots berth-cri holds prepared ahead in `namespace` of the
 * containerd at `socket` (cri-shim/pod/spare-rootfs.ts): each is named by the label of the lease
 * that holds it. Sorted.
 */
export function spareSnapshotKeys(socket: string, namespace = 'berth.io'): string[] {
  const out = execFileSync('ctr', ['-a', socket, '-n', namespace, 'leases', 'ls', `labels."${spareLeaseLabel}"`], { encoding: 'utf8' });
  const label = new RegExp(`(?:^|[\\s,])${spareLeaseLabel.replace(/\./g, '\\.')}=([0-9a-f]+)`);
  return out.split('\n').slice(1).flatMap((line) => {
    const m = label.exec(line);
    return m ? [m[1]!] : [];
  }).sort();
}

/** Kill every runc shim (and so its containers) that belongs to the containerd at `socket`. */
export function killShims(socket: string): void {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.startsWith('/usr/bin/containerd-shim') && cmdline.includes(`\0${socket}`)) {
      // A shim's children (the containers) die with it when we kill the whole group first.
      trySh('pkill', ['-KILL', '-P', pid]);
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

/** Lazily unmount everything mounted under `dir` (snapshot mounts of killed containers). */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) trySh('umount', ['-l', m]);
}

export async function startContainerd(options: ContainerdOptions = {}): Promise<ContainerdWorld> {
  // Unix socket paths are limited to 108 bytes, so the socket lives in a short /run path.
  const name = uniqueName('ctrd-');
  const dir = join('/tmp', `berth-test-${name}`);
  const socketDir = join('/run', 'berth-test', name);
  mkdirSync(dir, { recursive: true });
  mkdirSync(socketDir, { recursive: true });
  const socket = join(socketDir, 'containerd.sock');
  writeFileSync(join(dir, 'config.toml'), configToml(dir, socket, options));
  if (options.cri) {
    const host = options.cri.registryHost;
    mkdirSync(join(dir, 'certs.d', host), { recursive: true });
    writeFileSync(join(dir, 'certs.d', host, 'hosts.toml'), `server = "http://${host}"\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`);
  }
  const logFile = join(dir, 'containerd.log');
  const log = openSync(logFile, 'a');
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml'), '--log-level', 'info'], {
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });

  const stop = async (): Promise<void> => {
    killShims(socket);
    if (!exited) {
      child.kill('SIGTERM');
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited) child.kill('SIGKILL');
    }
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    rmSync(socketDir, { recursive: true, force: true });
  };

  for (let i = 0; i < 100; i++) {
    if (exited) break;
    if (existsSync(socket)) return { dir, socket, root: join(dir, 'root'), state: join(dir, 'state'), logFile, stop };
    await sleep(50);
  }
  const output = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '';
  await stop();
  throw new Error(`containerd did not start (socket ${socket}):\n${output}`);
}
