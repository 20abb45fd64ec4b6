import { closeSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { BerthError } from '../../lib/errors.js';
import { nativeAddon } from '../../lib/native.js';
import type { CallerContext } from '../../lib/cni/cnid-protocol.js';

// Who really called: the HELLO's context is what the caller says about itself, and a caller can
// say anything. The kernel knows better: SO_PEERCRED names the connecting process and its ids,
// and /proc/<pid>/ shows its namespaces, root, working directory, umask and capabilities. The
// daemon serves a call only when the caller's words match the kernel's view and that view
// matches the daemon's own; reading is inspectProcess/peerView, deciding is callerMismatch.

/**
 * The namespaces compared, by their /proc/<pid>/ns/ names (those the kernel lacks are skipped);
 * network and mount first, the two a caller elsewhere is most likely to differ in.
 */
export const namespaceNames = ['net', 'mnt', 'user', 'pid', 'uts', 'ipc', 'cgroup', 'time'] as const;

const namespaceTitle: Record<string, string> = { user: 'user', mnt: 'mount', pid: 'pid', net: 'network', uts: 'UTS', ipc: 'IPC', cgroup: 'cgroup', time: 'time' };

/** A process as the kernel shows it in /proc/<pid>/. */
export interface ProcessView {
  /** Effective ids: at connect(2) for a peer (SO_PEERCRED), current for the daemon. */
  uid: number;
  gid: number;
  /** readlink of ns/<name>, e.g. net: "net:[4026531840]"; a namespace that cannot be read is absent. */
  namespaces: Partial<Record<string, string>>;
  /**
   * readlink of root and cwd: the paths as seen from the reader's root. These and the fields
   * below are absent when inspectProcess stopped at a network or mount namespace that differs.
   */
  root?: string;
  cwd?: string;
  /**
   * "dev:ino" of the root and working directory. Read only for a process whose mount namespace
   * and paths already match the comparison's, see inspectProcess.
   */
  rootId?: string;
  cwdId?: string;
  /** From status: Umask (e.g. 0o022) and CapEff (hex); absent on kernels that do not show them. */
  umask?: number;
  capEff?: string;
}

/**
 * Read a process's view from `dir` (/proc/self, or /proc/self/fd/<n> for an open /proc/<pid>).
 * With `like` (the daemon), reading stops after a network or mount namespace that differs from
 * `like`'s - callerMismatch declines on that alone, and a flood of callers from elsewhere then
 * costs two readlinks each - and the root and cwd are stat'ed only when both paths equal
 * `like`'s: a stat reaches the directory's filesystem, which a caller elsewhere could have made
 * hang (a stuck FUSE or NFS mount), and this runs on the event loop. Throws on a process that
 * cannot be read (gone, or a /proc without it).
 */
export function inspectProcess(dir: string, ids: { uid: number; gid: number }, like?: ProcessView): ProcessView {
  const namespaces: Partial<Record<string, string>> = {};
  const view: ProcessView = { uid: ids.uid, gid: ids.gid, namespaces };
  for (const name of namespaceNames) {
    try {
      namespaces[name] = readlinkSync(`${dir}/ns/${name}`);
    } catch {
      // a namespace type this kernel lacks, or a process gone meanwhile (the links below throw then)
    }
    if (like && (name === 'net' || name === 'mnt') && namespaces[name] !== like.namespaces[name]) return view;
  }
  const status = readFileSync(`${dir}/status`, 'utf8');
  const umask = /^Umask:\s*([0-7]+)$/m.exec(status)?.[1];
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  view.root = readlinkSync(`${dir}/root`);
  view.cwd = readlinkSync(`${dir}/cwd`);
  if (umask !== undefined) view.umask = parseInt(umask, 8);
  if (capEff !== undefined) view.capEff = capEff;
  if (!like || (view.root === like.root && view.cwd === like.cwd)) {
    view.rootId = fileId(`${dir}/root`);
    view.cwdId = fileId(`${dir}/cwd`);
  }
  return view;
}

function fileId(path: string): string {
  const st = statSync(path, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/** The daemon itself, as inspectProcess sees a caller. */
export function ownView(): ProcessView {
  return inspectProcess('/proc/self', { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 });
}

/** The fd of an accepted unix socket (libuv's pipe handle has it on Linux). */
function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new BerthError('failed-precondition', 'the connection has no file descriptor');
  return fd;
}

/**
 * The kernel's view of the process that connected `socket`, read through a /proc/<pid> directory
 * that the native addon opened for that very process (pidfd-checked, see lib/native/peercred.c):
 * if the process exits meanwhile, the reads fail rather than show whoever reuses its pid.
 */
export function peerView(socket: Socket, like: ProcessView): ProcessView {
  const peer = nativeAddon('peerCredentials').peerCredentials(socketFd(socket));
  try {
    return inspectProcess(`/proc/self/fd/${peer.procFd}`, peer, like);
  } finally {
    closeSync(peer.procFd);
  }
}

const octal = (n: number | undefined) => (n === undefined ? 'unknown' : n.toString(8));

/**
 * Why a caller may not be served, or undefined when it may. A caller that lies is declined,
 * whatever it lies about, and so is one that the kernel shows elsewhere than the daemon (a plugin
 * run here acts in the daemon's namespaces, root and directory, with its ids, umask and
 * capabilities; run standalone it would act in the caller's). The namespaces come first: a view
 * inspectProcess cut short is declined on them.
 */
export function callerMismatch(claimed: CallerContext, peer: ProcessView, own: ProcessView): string | undefined {
  const kernelNs = (name: string) => peer.namespaces[name] ?? 'an unreadable one';
  const said: Partial<Record<string, string>> = { net: claimed.netns, mnt: claimed.mntns };
  for (const name of namespaceNames) {
    const title = namespaceTitle[name];
    if (said[name] !== undefined && said[name] !== peer.namespaces[name]) return `caller claims ${title} namespace ${said[name]} but runs in ${kernelNs(name)}`;
    const mine = own.namespaces[name]; // undefined: a namespace type this kernel lacks
    if (mine !== undefined && peer.namespaces[name] !== mine) return `caller ${title} namespace ${kernelNs(name)} differs from the daemon's ${mine}`;
  }
  if (claimed.euid !== peer.uid) return `caller claims euid ${claimed.euid} but connected with euid ${peer.uid}`;
  if (claimed.cwd !== peer.cwd) return `caller claims working directory ${claimed.cwd} but works in ${peer.cwd ?? '(unread)'}`;
  if (claimed.umask !== peer.umask) return `caller claims umask ${octal(claimed.umask)} but has umask ${octal(peer.umask)}`;
  if (peer.uid !== own.uid) return `caller euid ${peer.uid} differs from the daemon's ${own.uid}`;
  if (peer.gid !== own.gid) return `caller egid ${peer.gid} differs from the daemon's ${own.gid}`;
  // The ids catch the same path naming another directory (one mounted over since the caller went in).
  if (peer.root !== own.root) return `caller root directory ${peer.root ?? '(unread)'} differs from the daemon's ${own.root}`;
  if (peer.rootId !== own.rootId) return `caller root directory ${peer.root} (${peer.rootId ?? 'unread'}) is not the daemon's (${own.rootId ?? 'unread'})`;
  if (peer.cwd !== own.cwd) return `caller working directory ${peer.cwd ?? '(unread)'} differs from the daemon's ${own.cwd}`;
  if (peer.cwdId !== own.cwdId) return `caller working directory ${peer.cwd} (${peer.cwdId ?? 'unread'}) is not the daemon's (${own.cwdId ?? 'unread'})`;
  if (peer.umask !== own.umask) return `caller umask ${octal(peer.umask)} differs from the daemon's ${octal(own.umask)}`;
  if (peer.capEff !== own.capEff) return `caller effective capabilities ${peer.capEff ?? 'unknown'} differ from the daemon's ${own.capEff ?? 'unknown'}`;
  return undefined;
}
