import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { RtnlSession } from '../lib/netlink/rtnl.js';

// Real network namespaces for integration tests. Names carry a random part so reruns and
// leftovers never collide; `cleanup()` removes everything a test made, even after a failure.

export const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('skipping root-only integration tests: they create network namespaces, links and firewall rules (run as root)');

export function uniqueName(prefix: string): string {
  return `${prefix}${randomBytes(3).toString('hex')}`;
}

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function trySh(cmd: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export class TestWorld {
  private readonly netnses: string[] = [];
  private readonly links: string[] = [];
  private readonly cleanups: (() => void)[] = [];

  /** Create a named network namespace (/run/netns/NAME) with lo down, as a runtime would. */
  netns(prefix = 'bt-'): { name: string; path: string } {
    const name = uniqueName(prefix);
    sh('ip', ['netns', 'add', name]);
    this.netnses.push(name);
    return { name, path: `/run/netns/${name}` };
  }

  /** Remember a host link to delete at cleanup (e.g. a bridge the plugin created). */
  link(name: string): string {
    this.links.push(name);
    return name;
  }

  /** A new namespace and a netlink session opened in it; cleanup() closes the session first. */
  async rtnlSession(prefix: string): Promise<{ s: RtnlSession; ns: { name: string; path: string } }> {
    const ns = this.netns(prefix);
    const s = await RtnlSession.open(ns.path);
    this.defer(() => s.close());
    return { s, ns };
  }

  defer(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Run a command inside a namespace (network namespace only, as the DESIGN recommends). */
  inNetns(name: string, cmd: string, args: string[]): { code: number; stdout: string; stderr: string } {
    return trySh('nsenter', [`--net=/run/netns/${name}`, cmd, ...args]);
  }

  cleanup(): void {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try { fn(); } catch { /* keep cleaning */ }
    }
    for (const name of this.netnses.splice(0)) {
      if (existsSync(`/run/netns/${name}`)) trySh('ip', ['netns', 'del', name]);
    }
    for (const link of this.links.splice(0)) trySh('ip', ['link', 'del', link]);
  }
}

export function linkExists(name: string, netns?: string): boolean {
  const args = netns ? ['-n', netns, 'link', 'show', name] : ['link', 'show', name];
  return trySh('ip', args).code === 0;
}
