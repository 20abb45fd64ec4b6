import { readFileSync, statSync } from 'node:fs';

// Which plugin executables are berth's C shim (cni-plugins/cnid/shim.c), and of which build.
// The shim carries the text "berth-cni-shim build=<id>"; a runtime that finds it may give the
// call to a berth-cnid (or the plugins in its own process) of that same build instead of
// starting the program: the shim would do exactly that itself. Anything else is a foreign
// plugin and is always executed.

const marker = Buffer.from('berth-cni-shim build=');
/** The shim is a few tens of KiB; a larger file is no shim of ours and is not read whole. */
const maxShimBytes = 1024 * 1024;
const idPattern = /^[0-9A-Za-z._-]+/;

interface Entry {
  key: string;
  buildId: string | undefined;
}

const cache = new Map<string, Entry>();

/**
 * The build id of berth's shim at `path`, or undefined for any other file (or none). Read once
 * per file version (device, inode, size, mtime), so a plugin replaced on disk is read again.
 */
export function berthShimBuildId(path: string): string | undefined {
  let key: string;
  try {
    const st = statSync(path, { bigint: true });
    if (!st.isFile() || st.size > BigInt(maxShimBytes)) return undefined;
    key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return undefined;
  }
  const known = cache.get(path);
  if (known?.key === key) return known.buildId;
  let buildId: string | undefined;
  try {
    const bytes = readFileSync(path);
    const at = bytes.indexOf(marker);
    if (at >= 0) buildId = idPattern.exec(bytes.subarray(at + marker.length, at + marker.length + 128).toString('latin1'))?.[0];
  } catch {
    buildId = undefined;
  }
  // Bounded: CNI_PATH holds a handful of plugins; a runaway set of names is not kept.
  if (cache.size > 256) cache.clear();
  cache.set(path, { key, buildId });
  return buildId;
}
