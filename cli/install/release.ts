import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { berthVersion } from '../../lib/version.js';

// The release being installed: the tree the running `berth` came from. Either an unpacked
// release tarball (scripts/release.mjs: it has a VERSION file) or a checkout's dist/, laid out
// on the fly the same way, so `dist/cli/berth install` works from a build too.

/** The dist/ trees a node runs from; scripts/release.mjs ships the same (a unit test compares). */
export const releaseDistDirs = ['bin', 'berthd', 'cli', 'cni', 'cni-js', 'cnid', 'native', 'proto', 'lib', 'pause'];

/** bin/berth in a release: the CLI on the release's own Node (the same text as scripts/release.mjs). */
export const launcherScript = `#!/bin/sh
# berth's launcher: the CLI on the Node runtime shipped beside it (scripts/release.mjs).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" "$here/../cli/berth" "$@"
`;

/** One top-level entry of the release tree and where its bytes come from. */
export type ReleaseEntry = { name: string; from: string } | { name: string; content: string; mode: number };

export interface ReleaseSource {
  version: string;
  /** For messages: the directory the release is read from. */
  origin: string;
  /** What <prefix>/releases/<version>/ must hold, by path inside it. */
  entries: ReleaseEntry[];
  /** Warnings found while laying it out (e.g. no pinned Node runtime). */
  warnings: string[];
}

/** The release the CLI at `cliPath` belongs to (dist/cli/berth or berth-<v>/cli/berth). */
export function locateRelease(cliPath: string): ReleaseSource {
  const top = dirname(dirname(realpathSync(cliPath)));
  if (existsSync(join(top, 'VERSION'))) {
    const version = readFileSync(join(top, 'VERSION'), 'utf8').trim();
    return { version, origin: top, entries: readdirSync(top).sort().map((name) => ({ name, from: join(top, name) })), warnings: [] };
  }
  const checkout = dirname(top);
  if (existsSync(join(top, 'bin/berthd')) && existsSync(join(checkout, 'systemd/berthd.service'))) return checkoutRelease(top, checkout);
  throw new BerthError('not-found', `${top} is neither a release (no VERSION file) nor a checkout's dist/ (no bin/berthd beside ../systemd): run berth from an unpacked release (npm run release) or a build`);
}

/** A checkout's dist/ as a release: what scripts/release.mjs would put in the tarball. */
function checkoutRelease(dist: string, checkout: string): ReleaseSource {
  const warnings: string[] = [];
  const entries: ReleaseEntry[] = [];
  for (const d of releaseDistDirs) {
    if (!existsSync(join(dist, d))) throw new BerthError('not-found', `${join(dist, d)} is missing: run node scripts/build.mjs first`);
    entries.push({ name: d, from: join(dist, d) });
  }
  entries.push({ name: 'bin/berth', content: launcherScript, mode: 0o755 });
  // The pinned runtime the build links at dist/node/bin/node; this process's Node otherwise.
  const pinned = join(dist, 'node/bin/node');
  let node = pinned;
  if (!existsSync(pinned)) {
    warnings.push(`${pinned} is missing (no pinned runtime in this build): installing ${process.execPath} (Node ${process.version}) instead`);
    node = process.execPath;
  }
  entries.push({ name: 'node/bin/node', from: realpathSync(node) });
  entries.push({ name: 'systemd', from: join(checkout, 'systemd') });
  entries.push({ name: 'share/manifests', from: join(checkout, 'share/manifests') });
  entries.push({ name: 'share/berth.yaml', from: join(checkout, 'share/berth.yaml') });
  entries.push({ name: 'VERSION', content: `${berthVersion}\n`, mode: 0o644 });
  return { version: berthVersion, origin: dist, entries, warnings };
}

/**
 * Every file of the release as `path -> { from | content, executable }`, in path order: what a
 * copy writes, and what the digest covers. Links inside are followed (a release holds files).
 */
export function releaseFiles(entries: ReleaseEntry[]): Map<string, { from?: string; content?: string; executable: boolean }> {
  const files = new Map<string, { from?: string; content?: string; executable: boolean }>();
  const walk = (path: string, rel: string): void => {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return walk(realpathSync(path), rel);
    if (st.isDirectory()) {
      for (const name of readdirSync(path)) if (!name.endsWith('.tmp')) walk(join(path, name), `${rel}/${name}`);
    } else if (st.isFile()) {
      files.set(rel, { from: path, executable: (st.mode & 0o111) !== 0 });
    }
  };
  for (const e of entries) {
    if ('content' in e) files.set(e.name, { content: e.content, executable: (e.mode & 0o111) !== 0 });
    else walk(e.from, e.name);
  }
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A digest of a file set (paths, executable bits, bytes): equal digests mean an equal tree. */
export function digestFiles(files: Map<string, { from?: string; content?: string; executable: boolean }>): string {
  const hash = createHash('sha256');
  for (const [rel, f] of files) {
    hash.update(`${rel}\0${f.executable ? 'x' : '-'}\0`);
    hash.update(f.content ?? readFileSync(f.from!));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** The digest of an installed release directory, or undefined when it is not one. */
export function digestInstalledTree(dir: string): string | undefined {
  if (!existsSync(join(dir, 'VERSION'))) return undefined;
  return digestFiles(releaseFiles(readdirSync(dir).map((name) => ({ name, from: join(dir, name) }))));
}
