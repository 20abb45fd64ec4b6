#!/usr/bin/env node
// `npm run release` [-- --out DIR] [--keep-tree]: the tarball a node installs from, dist/release/berth-<version>-linux-<arch>.tar.gz.
// It holds everything a node needs and nothing of the build machine: the bundles and native
// addons of dist/ (not bench/ or demo/), the pinned Node runtime as a real file, the unit files,
// the cluster manifests, the default config and a bin/berth launcher that runs the CLI on that
// runtime. Run it after `node scripts/build.mjs`.
//
// Deterministic: entries sorted by name, owned by 0:0, one mtime (SOURCE_DATE_EPOCH or the last
// commit's time), modes normalized (0755 for directories and executables, 0644 otherwise), and a
// gzip header without a timestamp, so the same tree gives the same bytes.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The dist/ trees a node runs from (cli/install/release.ts lists the same; a unit test compares). */
export const releaseDistDirs = ['bin', 'berthd', 'cli', 'cni', 'cni-js', 'cnid', 'native', 'proto', 'lib', 'pause'];

/** bin/berth: the CLI on the release's own Node, wherever the tree was unpacked or linked from. */
export const launcherScript = `#!/bin/sh
# berth's launcher: the CLI on the Node runtime shipped beside it (scripts/release.mjs).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" "$here/../cli/berth" "$@"
`;

/** The Node binary to ship: the pinned one the build links at dist/node/bin/node, else this one. */
export function pinnedNode(distDir, warn = (m) => console.warn(m)) {
  const pinned = join(distDir, 'node/bin/node');
  if (existsSync(pinned)) return realpathSync(pinned);
  warn(`release: WARNING: ${pinned} is missing (no pinned runtime in this build); shipping ${process.execPath} (Node ${process.version}) instead`);
  return realpathSync(process.execPath);
}

function copyTree(from, to) {
  const st = lstatSync(from);
  if (st.isSymbolicLink()) {
    // A link inside dist/ (none today) is followed: the release must not point back at the build machine.
    copyTree(realpathSync(from), to);
  } else if (st.isDirectory()) {
    mkdirSync(to, { recursive: true });
    for (const name of readdirSync(from)) {
      if (name.endsWith('.tmp')) continue;
      copyTree(join(from, name), join(to, name));
    }
  } else if (st.isFile()) {
    copyFileSync(from, to);
    chmodSync(to, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

/** Directories 0755, a fixed mtime everywhere. */
function normalize(dir, mtime) {
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) normalize(p, mtime);
    else utimesSync(p, mtime, mtime);
  }
  utimesSync(dir, mtime, mtime);
}

function sourceDateEpoch() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number(execFileSync('git', ['-C', root, 'log', '-1', '--format=%ct'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return 0;
  }
}

/** Lay out berth-<version>/ under outDir; returns its path. */
export function stageRelease({ distDir = join(root, 'dist'), outDir = join(distDir, 'release'), warn } = {}) {
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  if (!existsSync(join(distDir, 'cli/berth')) || !existsSync(join(distDir, 'bin/berthd'))) {
    throw new Error(`${distDir} has no build (cli/berth, bin/berthd): run node scripts/build.mjs first`);
  }
  const name = `berth-${version}`;
  const stage = join(outDir, `.${name}.${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const d of releaseDistDirs) {
    if (!existsSync(join(distDir, d))) throw new Error(`${join(distDir, d)} is missing: run node scripts/build.mjs first`);
    copyTree(join(distDir, d), join(stage, d));
  }
  mkdirSync(join(stage, 'node/bin'), { recursive: true });
  copyFileSync(pinnedNode(distDir, warn), join(stage, 'node/bin/node'));
  chmodSync(join(stage, 'node/bin/node'), 0o755);
  writeFileSync(join(stage, 'bin/berth'), launcherScript);
  chmodSync(join(stage, 'bin/berth'), 0o755);
  copyTree(join(root, 'systemd'), join(stage, 'systemd'));
  mkdirSync(join(stage, 'share'), { recursive: true });
  copyTree(join(root, 'share/manifests'), join(stage, 'share/manifests'));
  copyTree(join(root, 'share/berth.yaml'), join(stage, 'share/berth.yaml'));
  writeFileSync(join(stage, 'VERSION'), `${version}\n`);
  chmodSync(join(stage, 'VERSION'), 0o644);
  normalize(stage, sourceDateEpoch());
  const dir = join(outDir, name);
  rmSync(dir, { recursive: true, force: true });
  renameSync(stage, dir);
  return { dir, name, version };
}

/** The tarball of a staged tree, deterministic (see the top of this file). */
export async function packRelease({ dir, name }, arch = process.arch === 'x64' ? 'x64' : process.arch) {
  const out = join(dirname(dir), `${name}-linux-${arch}.tar.gz`);
  const mtime = Math.floor(statSync(dir).mtimeMs / 1000);
  const tar = spawn('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${mtime}`, '--format=gnu', '-C', dirname(dir), '-cf', '-', name], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((res, rej) => tar.on('close', (code) => (code === 0 ? res() : rej(new Error(`tar exited ${code}`)))));
  const tmp = `${out}.${process.pid}.tmp`;
  await pipeline(tar.stdout, createGzip(), createWriteStream(tmp));
  await exited;
  renameSync(tmp, out);
  return out;
}

async function main(argv) {
  const keep = argv.includes('--keep-tree');
  const outAt = argv.indexOf('--out');
  const outDir = outAt >= 0 ? resolve(argv[outAt + 1] ?? '') : undefined;
  const staged = stageRelease(outDir ? { outDir } : {});
  const out = await packRelease(staged);
  if (!keep) rmSync(staged.dir, { recursive: true, force: true });
  const size = statSync(out).size;
  console.log(`release: ${out} (${(size / 1048576).toFixed(1)} MiB)${keep ? `; tree in ${staged.dir}` : ''}`);
  console.log(`install on a node: tar -xzf ${staged.name}-linux-*.tar.gz && sudo ./${staged.name}/bin/berth install`);
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(`release: ${err.message}`);
    process.exit(1);
  });
}
