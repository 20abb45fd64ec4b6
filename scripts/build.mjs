#!/usr/bin/env node
// Build everything that runs: the native addon (node-gyp) and one esbuild bundle per executable.
// CNI executables are spawned once per pod operation, so each is a single CommonJS file with a
// shebang: no TypeScript loader, no module resolution walk at run time.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** Executables: output path under dist/ -> TypeScript entry. */
export const executables = {
  'cni/berth-bridge': 'cni-plugins/bridge/main.ts',
  'cni/berth-loopback': 'cni-plugins/loopback/main.ts',
  'cni/berth-portmap': 'cni-plugins/portmap/main.ts',
  'cni/berth-host-local': 'ipam/main.ts',
  'cli/berth': 'cli/main.ts',
  'bench/cni': 'bench/cni.ts',
};

function newest(dir) {
  let t = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    if (f.name === 'build') continue;
    const p = join(dir, f.name);
    t = Math.max(t, f.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function buildNative() {
  const dir = join(root, 'lib/native');
  if (!existsSync(join(dir, 'binding.gyp'))) return;
  const out = join(dir, 'build/Release/berth_native.node');
  if (!existsSync(out) || statSync(out).mtimeMs < newest(dir)) {
    const gyp = join(root, 'node_modules/node-gyp/bin/node-gyp.js');
    execFileSync(process.execPath, [gyp, 'rebuild', '--directory', dir, `--nodedir=${dirname(dirname(process.execPath))}`, '--silent'], {
      stdio: 'inherit',
    });
  }
  mkdirSync(join(dist, 'native'), { recursive: true });
  copyFileSync(out, join(dist, 'native/berth_native.node'));
}

function copyNetlinkBinding() {
  const pkg = join(root, 'node_modules/netlink');
  const built = join(pkg, 'build/Release/netlink.node');
  const prebuilt = join(pkg, `prebuilds/linux-${process.arch}/node.napi.node`);
  const from = existsSync(built) ? built : prebuilt;
  mkdirSync(join(dist, 'native'), { recursive: true });
  copyFileSync(from, join(dist, 'native/netlink.node'));
}

// Native modules are loaded from dist/native/ relative to the bundle, so dist/ is self-contained.
const nativePlugin = {
  name: 'berth-native',
  setup(b) {
    b.onLoad({ filter: /node_modules[\\/]netlink[\\/]dist[\\/]raw\.js$/ }, (args) => ({
      contents: readFileSync(args.path, 'utf8').replace(
        /require\('node-gyp-build'\)\(__dirname \+ '\/\.\.'\)/,
        "require(require('path').join(__dirname, '../native/netlink.node'))",
      ),
      loader: 'js',
    }));
  },
};

async function bundle(out, entry) {
  const outfile = join(dist, out);
  await build({
    entryPoints: [join(root, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: false,
    sourcemap: false,
    legalComments: 'none',
    banner: { js: '#!/usr/bin/env node' },
    define: { 'import.meta.url': 'importMetaUrl', BERTH_BUNDLED: 'true' },
    inject: [join(root, 'scripts/import-meta-url.js')],
    plugins: [nativePlugin],
    logLevel: 'warning',
  });
  chmodSync(outfile, 0o755);
}

mkdirSync(join(dist, 'cni'), { recursive: true });
// Extensionless bundles are CommonJS; say so, since the repository's package.json says module.
for (const d of ['cni', 'cli', 'bench']) mkdirSync(join(dist, d), { recursive: true });
for (const d of ['cni', 'cli', 'bench']) writeFileSync(join(dist, d, 'package.json'), '{"type":"commonjs"}\n');
buildNative();
copyNetlinkBinding();
const only = process.argv.slice(2);
await Promise.all(
  Object.entries(executables)
    .filter(([out]) => only.length === 0 || only.some((o) => out.includes(o)))
    .filter(([, entry]) => existsSync(join(root, entry)))
    .map(([out, entry]) => bundle(out, entry)),
);
