#!/usr/bin/env node
// Build everything that runs: the native addon (node-gyp), one esbuild bundle per executable,
// and the CNI shim. CNI plugins are spawned once per pod operation, so each is a single CommonJS
// file: no TypeScript loader, no module resolution walk at run time. With a C compiler, the
// executables in dist/cni are a small C shim (cni-plugins/cnid/shim.c) that hands the call to
// berth-cnid, or runs node on the plugin's bundle in dist/cni-js when no daemon of its build
// answers; without one, dist/cni holds the bundles themselves (shebang scripts), as before.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** CNI plugins: executable name -> TypeScript entry. */
const cniPlugins = {
  'berth-bridge': 'cni-plugins/bridge/main.ts',
  'berth-loopback': 'cni-plugins/loopback/main.ts',
  'berth-portmap': 'cni-plugins/portmap/main.ts',
  'berth-overlay': 'cni-plugins/overlay/main.ts',
  'berth-host-local': 'cni-plugins/host-local/main.ts',
  'berth-bandwidth': 'cni-plugins/bandwidth/main.ts',
  'berth-tuning': 'cni-plugins/tuning/main.ts',
};
const shimSources = ['cni-plugins/cnid/shim.c', 'cni-plugins/loopback/fast.c', 'cni-plugins/loopback/fast.h'];
const cnidOut = 'cnid/berth-cnid';
// Stands in for the build id while the daemon bundle is hashed, then is replaced by it.
const buildIdPlaceholder = '@@BERTH_BUILD_ID@@';

/** A working C compiler ($CC or cc), or undefined. */
function findCompiler() {
  const cc = process.env.CC || 'cc';
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
    return cc;
  } catch {
    return undefined;
  }
}
const cc = findCompiler();

/**
 * Executables: output path under dist/ -> TypeScript entry. The filter on the command line
 * matches the output path or the installed name (cni/berth-bridge), whichever layout is built.
 */
export const executables = {
  ...Object.fromEntries(Object.entries(cniPlugins).map(([name, entry]) => [cc ? `cni-js/${name}.cjs` : `cni/${name}`, entry])),
  [cnidOut]: 'cni-plugins/cnid/main.ts',
  'cli/berth': 'cli/main.ts',
  'demo/berth-demo': 'demo/main.ts',
  'bin/berth-cri': 'cri-shim/main.ts',
  'bin/berth-csi': 'csi-driver/main.ts',
  'bin/berth-gpu': 'device-plugin/main.ts',
  'bin/berth-overlayd': 'overlayd/main.ts',
  // berth-overlayd's kube lease store, required only when chosen (see overlayd/main.ts).
  'lib/overlayd-kube.cjs': 'overlayd/lease/kube.ts',
  'bench/cni': 'bench/cni.ts',
  'bench/cri': 'bench/cri.ts',
  'bench/stream': 'bench/stream.ts',
  'bench/csi': 'bench/csi.ts',
  'bench/gpu': 'bench/gpu.ts',
  'bench/overlay': 'bench/overlay.ts',
  'bench/memory': 'bench/memory.ts',
  'bench/steady': 'bench/steady.ts',
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

// The Node runtime berth runs on: package.json pins node-linux-<arch> (optionalDependencies),
// which npm ci installs for this machine only. Its directory also holds include/node, the headers
// the native addon is built against, so node-gyp never downloads any.
const pinnedRuntime = join(root, `node_modules/node-${process.platform}-${process.arch}`);
const runtimeDir = existsSync(join(pinnedRuntime, 'include/node/node_api.h')) ? pinnedRuntime : dirname(dirname(process.execPath));

function buildNative() {
  const dir = join(root, 'lib/native');
  if (!existsSync(join(dir, 'binding.gyp'))) return;
  const out = join(dir, 'build/Release/berth_native.node');
  // node-gyp records the headers it built against in build/config.gypi: another runtime rebuilds.
  const config = join(dir, 'build/config.gypi');
  const builtFor = existsSync(config) && readFileSync(config, 'utf8').includes(`"nodedir": "${runtimeDir}"`);
  if (!existsSync(out) || !builtFor || statSync(out).mtimeMs < newest(dir)) {
    const gyp = join(root, 'node_modules/node-gyp/bin/node-gyp.js');
    execFileSync(process.execPath, [gyp, 'rebuild', '--directory', dir, `--nodedir=${runtimeDir}`, '--silent'], {
      stdio: 'inherit',
    });
  }
  mkdirSync(join(dist, 'native'), { recursive: true });
  // Copy then rename: a running daemon has the old file mapped, and overwriting it in place
  // would change the code under its feet.
  const target = join(dist, 'native/berth_native.node');
  copyFileSync(out, `${target}.tmp`);
  renameSync(`${target}.tmp`, target);
}

function copyNetlinkBinding() {
  const pkg = join(root, 'node_modules/netlink');
  const built = join(pkg, 'build/Release/netlink.node');
  const prebuilt = join(pkg, `prebuilds/linux-${process.arch}/node.napi.node`);
  const from = existsSync(built) ? built : prebuilt;
  mkdirSync(join(dist, 'native'), { recursive: true });
  copyFileSync(from, join(dist, 'native/netlink.node'));
}

// etcd3 loads its .proto files at run time from `${__dirname}/../proto`: in a bundle that is
// dist/proto, so they go there (berth-overlayd and bench/overlay use etcd3).
function copyEtcdProtos() {
  const from = join(root, 'node_modules/etcd3/proto');
  mkdirSync(join(dist, 'proto'), { recursive: true });
  for (const f of readdirSync(from)) if (f.endsWith('.proto')) copyFileSync(join(from, f), join(dist, 'proto', f));
}

// Native modules are loaded from dist/native/ relative to the bundle, so dist/ is self-contained.
// Every bundle sits one directory below dist/ (cni, cni-js, cnid, cli, demo, bench, bin), which is what
// this '../native' and lib/netns.ts's nativeAddonPath() both assume.
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

/**
 * V8 holds a script's source for as long as its functions may still be compiled lazily, at one
 * byte a character when every character is Latin-1 and two when any one is not. esbuild escapes
 * what is not ASCII in strings, regular expressions and names, but copies comments as they are:
 * one dash in a dependency's comment made berth-cri's 3.7 MB bundle a 7.1 MiB string. Whatever
 * is left outside ASCII is in a comment, where an escape is as good as the character.
 */
function asciiSource(file) {
  const text = readFileSync(file, 'utf8');
  if (/[^\p{ASCII}]/u.test(text)) writeFileSync(file, text.replace(/[^\p{ASCII}]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`));
}

async function bundle(out, entry, define = {}) {
  const outfile = join(dist, out);
  await build({
    entryPoints: [join(root, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    minify: false,
    sourcemap: false,
    legalComments: 'none',
    banner: { js: '#!/usr/bin/env node' },
    define: { 'import.meta.url': 'importMetaUrl', BERTH_BUNDLED: 'true', ...define },
    inject: [join(root, 'scripts/import-meta-url.js')],
    plugins: [nativePlugin],
    logLevel: 'warning',
  });
  asciiSource(outfile);
  chmodSync(outfile, 0o755);
}

/**
 * berthd (berthd/main.ts) as ES modules with code splitting: every component is a chunk loaded
 * only when enabled, and what they share (grpc-js, pino, lib/) is one chunk loaded once. The
 * chunks sit in dist/berthd/, one directory below dist/ like every bundle (../native holds the
 * addons); dist/bin/berthd is a small launcher for it. CommonJS packages inside an ES module need
 * require, __filename and __dirname (etcd3 reads its .proto files from __dirname/../proto).
 */
async function bundleBerthd(buildId) {
  const outdir = join(dist, 'berthd');
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: { berthd: join(root, 'berthd/main.ts') },
    outdir,
    bundle: true,
    splitting: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    outExtension: { '.js': '.mjs' },
    chunkNames: '[name]-[hash]',
    minify: false,
    sourcemap: false,
    legalComments: 'none',
    banner: {
      js: [
        "import { createRequire as __berthCreateRequire } from 'node:module';",
        "import { fileURLToPath as __berthFileURLToPath } from 'node:url';",
        "import { dirname as __berthDirname } from 'node:path';",
        'const require = __berthCreateRequire(import.meta.url);',
        'const __filename = __berthFileURLToPath(import.meta.url);',
        'const __dirname = __berthDirname(__filename);',
      ].join('\n'),
    },
    define: { BERTH_BUNDLED: 'true', BERTH_BUILD_ID: JSON.stringify(buildId ?? 'unbuilt') },
    plugins: [nativePlugin],
    logLevel: 'warning',
  });
  for (const f of readdirSync(outdir)) asciiSource(join(outdir, f));
  writeFileSync(join(dist, 'bin/berthd.tmp'), "#!/usr/bin/env node\n// berthd's launcher: the program is the ES modules in ../berthd (scripts/build.mjs).\nimport('../berthd/berthd.mjs');\n");
  chmodSync(join(dist, 'bin/berthd.tmp'), 0o755);
  renameSync(join(dist, 'bin/berthd.tmp'), join(dist, 'bin/berthd'));
}

/** Write `data` (or copy `from`) to `to` by rename, so a running copy of `to` is never touched. */
function replaceFile(to, { data, from, mode = 0o755 }) {
  const tmp = `${to}.${process.pid}.tmp`;
  if (from) copyFileSync(from, tmp);
  else writeFileSync(tmp, data);
  chmodSync(tmp, mode);
  renameSync(tmp, to);
}

/**
 * The daemon and the shims share one build id, a hash of the code either side would run (the
 * daemon bundle, every plugin bundle, the shim source): a shim only lets a daemon of its own
 * build serve it, so an upgraded plugin never runs old daemon code.
 */
async function buildDaemonAndShims() {
  await bundle(cnidOut, executables[cnidOut], { BERTH_BUILD_ID: JSON.stringify(buildIdPlaceholder) });
  const daemonFile = join(dist, cnidOut);
  const daemon = readFileSync(daemonFile, 'utf8');
  const hash = createHash('sha256').update(daemon);
  const bundled = Object.keys(cniPlugins).filter((name) => existsSync(join(dist, `cni-js/${name}.cjs`)));
  for (const name of bundled) hash.update(readFileSync(join(dist, `cni-js/${name}.cjs`)));
  for (const source of shimSources) hash.update(readFileSync(join(root, source)));
  const buildId = hash.digest('hex').slice(0, 16);
  replaceFile(daemonFile, { data: daemon.replaceAll(buildIdPlaceholder, buildId) });
  writeFileSync(join(dist, 'cnid/build-id'), `${buildId}\n`);

  const shim = join(dist, `cni/.berth-shim.${process.pid}`);
  execFileSync(cc, ['-O2', '-Wall', '-Wextra', `-DBERTH_BUILD_ID="${buildId}"`, '-o', shim, ...shimSources.filter((f) => f.endsWith('.c')).map((f) => join(root, f))], { stdio: 'inherit' });
  try {
    for (const name of bundled) replaceFile(join(dist, 'cni', name), { from: shim });
  } finally {
    rmSync(shim, { force: true });
  }
  // dist/cni holds only the shims now: nothing there is JavaScript.
  rmSync(join(dist, 'cni/package.json'), { force: true });
}

/**
 * The pause process of berth's own sandbox image (the test world and the demo build the image
 * from it). Static, so the image needs nothing but the binary.
 */
function buildPause() {
  mkdirSync(join(dist, 'pause'), { recursive: true });
  const tmp = join(dist, `pause/.berth-pause.${process.pid}`);
  execFileSync(cc, ['-static', '-Os', '-s', '-Wall', '-Wextra', '-o', tmp, join(root, 'cri-shim/pause/pause.c')], { stdio: 'inherit' });
  renameSync(tmp, join(dist, 'pause/berth-pause'));
}

// Extensionless bundles are CommonJS; say so, since the repository's package.json says module.
// (The plugin bundles in cni-js are .cjs, which needs no such file and survives being copied.)
const scriptDirs = cc ? ['cnid', 'cli', 'demo', 'bench', 'bin'] : ['cni', 'cnid', 'cli', 'demo', 'bench', 'bin'];
for (const d of ['cni', 'cni-js', 'cnid', 'cli', 'demo', 'bench', 'bin', 'lib']) mkdirSync(join(dist, d), { recursive: true });
for (const d of scriptDirs) writeFileSync(join(dist, d, 'package.json'), '{"type":"commonjs"}\n');
if (!cc) {
  console.warn('build: WARNING: no C compiler (set CC or install gcc): dist/cni gets the JS plugins as shebang scripts, a Node start per call; berth-cnid is built but nothing uses it');
}
/**
 * dist/node/bin/node: the runtime dist/ runs on (the CNI shim's standalone path, the units). A dev
 * build links the pinned binary; a release copies the file. dist/node/flags: the daemons' V8 flags
 * (systemd/node-flags, the units' EnvironmentFile).
 */
function linkRuntime() {
  const binary = join(pinnedRuntime, 'bin/node');
  const link = join(dist, 'node/bin/node');
  mkdirSync(dirname(link), { recursive: true });
  replaceFile(join(dist, 'node/flags'), { from: join(root, 'systemd/node-flags'), mode: 0o644 });
  if (!existsSync(binary)) {
    console.warn(`build: WARNING: no pinned Node runtime at ${binary} (run npm ci): dist/node/bin/node is not made`);
    return;
  }
  const tmp = `${link}.${process.pid}.tmp`;
  symlinkSync(binary, tmp);
  renameSync(tmp, link);
}

buildNative();
linkRuntime();
copyNetlinkBinding();
copyEtcdProtos();
const only = process.argv.slice(2);
const installedName = (out) => out.replace(/^cni-js\/(.*)\.cjs$/, 'cni/$1');
const selected = Object.entries(executables)
  .filter(([out]) => only.length === 0 || only.some((o) => out.includes(o) || installedName(out).includes(o)))
  .filter(([, entry]) => existsSync(join(root, entry)));
const cniSelected = selected.some(([out]) => out === cnidOut || out.startsWith('cni'));
await Promise.all(selected.filter(([out]) => !(cc && out === cnidOut)).map(([out, entry]) => bundle(out, entry)));
// The daemon embeds the build id, so it follows any plugin rebuild.
if (cc && cniSelected) await buildDaemonAndShims();
if (cc && (only.length === 0 || only.some((o) => 'pause/berth-pause'.includes(o)))) buildPause();
// berthd's CNI component answers the shims as berth-cnid does, so it carries the same build id.
if (only.length === 0 || only.some((o) => 'bin/berthd'.includes(o))) {
  const idFile = join(dist, 'cnid/build-id');
  await bundleBerthd(existsSync(idFile) ? readFileSync(idFile, 'utf8').trim() : undefined);
}
