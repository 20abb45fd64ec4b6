import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, buildIndex, type BuiltImage } from '../lib/oci/image.js';
import type { TarEntry } from '../lib/oci/tar.js';
import { repoRoot } from './cni.js';

// The test images, built from Debian's dynamic busybox (applets as hard links: masking /bin/ls
// must not mask busybox itself, and the static build's shell runs applets in-process) plus the
// host's libc, and berth's own static pause binary. No internet is needed: the images are pushed
// to the world's local registry.

const cacheDir = join(repoRoot, '.cache', 'debs');

/** The Debian busybox package, downloaded once with apt (busybox-static conflicts with it). */
function busyboxRoot(): string {
  const extracted = join(repoRoot, '.cache', 'busybox-root');
  if (existsSync(join(extracted, 'bin', 'busybox'))) return extracted;
  mkdirSync(cacheDir, { recursive: true });
  let deb = readdirSync(cacheDir).find((f) => f.startsWith('busybox_') && f.endsWith('.deb'));
  if (!deb) {
    execFileSync('apt-get', ['download', 'busybox'], { cwd: cacheDir, stdio: ['ignore', 'ignore', 'pipe'] });
    deb = readdirSync(cacheDir).find((f) => f.startsWith('busybox_') && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download busybox left no .deb in ${cacheDir}`);
  }
  execFileSync('dpkg-deb', ['-x', join(cacheDir, deb), extracted]);
  return extracted;
}

const passwd = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false',
  'www-data:x:33:33:www-data:/var/www:/bin/false',
  'berth:x:1000:1000:berth test user:/home/berth:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');

// berth is also in "extra" and "audio", so supplemental groups from the image can be checked.
const group = ['root:x:0:', 'daemon:x:1:', 'audio:x:29:berth', 'www-data:x:33:', 'berth:x:1000:', 'extra:x:1234:berth,daemon', 'nogroup:x:65534:', ''].join('\n');

// Stand-ins for tools critest and the tests expect but busybox lacks.
const pgrep = `#!/bin/sh
# pgrep stand-in: print the PIDs whose command line matches $1 (busybox here has no pgrep)
found=1
for d in /proc/[0-9]*; do
  cmd=$(tr '\\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
  [ -n "$cmd" ] || continue
  case "$cmd" in *pgrep*) continue ;; esac
  if echo "$cmd" | grep -q -- "$1"; then echo "\${d#/proc/}"; found=0; fi
done
exit $found
`;
const ipcs = `#!/bin/sh
# ipcs stand-in: the kernel's own SysV IPC tables
echo "------ Shared Memory Segments --------"; cat /proc/sysvipc/shm
echo "------ Semaphore Arrays --------"; cat /proc/sysvipc/sem
echo "------ Message Queues --------"; cat /proc/sysvipc/msg
`;
const httpdForeground = `#!/bin/sh
# Logs a start line first, like the httpd image critest's log test expects, then serves /www.
echo "httpd -D FOREGROUND"
exec httpd -f -v -p "\${PORT:-80}" -h /www
`;

function baseLayer(): TarEntry[] {
  const root = busyboxRoot();
  const entries: TarEntry[] = [];
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'lib', 'lib/x86_64-linux-gnu', 'lib64', 'etc', 'home', 'var', 'var/log', 'var/www', 'proc', 'sys', 'dev', 'run', 'mnt'];
  for (const d of dirs) entries.push({ type: 'dir', path: d });
  entries.push({ type: 'dir', path: 'tmp', mode: 0o1777 }, { type: 'dir', path: 'root', mode: 0o700 });
  entries.push({ type: 'dir', path: 'home/berth', uid: 1000, gid: 1000 });
  entries.push({ type: 'file', path: 'bin/busybox', data: readFileSync(join(root, 'bin', 'busybox')), mode: 0o755 });
  const applets = execFileSync(join(root, 'bin', 'busybox'), ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) if (applet !== 'bin/busybox') entries.push({ type: 'hardlink', path: applet, target: 'bin/busybox' });
  // The shared libraries busybox links against, at the paths its loader looks for them.
  for (const lib of ['/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libresolv.so.2', '/lib64/ld-linux-x86-64.so.2']) {
    entries.push({ type: 'file', path: lib, data: readFileSync(realpathSync(lib)), mode: 0o755 });
  }
  entries.push(
    { type: 'file', path: 'etc/passwd', data: passwd },
    { type: 'file', path: 'etc/group', data: group },
    { type: 'file', path: 'bin/pgrep', data: pgrep, mode: 0o755 },
    { type: 'file', path: 'bin/ipcs', data: ipcs, mode: 0o755 },
  );
  return entries;
}

const defaultEnv = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];

export interface TestImages {
  pause: BuiltImage;
  busybox: BuiltImage;
  busyboxArm64: BuiltImage;
  busyboxUid: BuiltImage;
  busyboxUsername: BuiltImage;
  busyboxDocker: BuiltImage;
  httpd: BuiltImage;
}

let cached: TestImages | undefined;
let base: TarEntry[] | undefined;

/** A busybox image with the given config over the default one (Cmd sh), and extra layers on top. */
export function busyboxImage(config: object, extra: TarEntry[][] = [], format: 'oci' | 'docker' = 'oci', architecture = 'amd64'): BuiltImage {
  base ??= baseLayer();
  return buildImage({ layers: [base, ...extra], config: { Env: defaultEnv, Cmd: ['sh'], ...config }, format, platform: { os: 'linux', architecture } });
}

/** Build (once per process) every test image. */
export function testImages(): TestImages {
  if (cached) return cached;
  const pauseBinary = join(repoRoot, 'dist', 'pause', 'berth-pause');
  if (!existsSync(pauseBinary)) throw new Error(`${pauseBinary} is missing: run node scripts/build.mjs`);
  const busybox = busyboxImage;
  cached = {
    pause: buildImage({ layers: [[{ type: 'file', path: 'pause', data: readFileSync(pauseBinary), mode: 0o755 }]], config: { Entrypoint: ['/pause'], Env: defaultEnv } }),
    busybox: busybox({}),
    busyboxArm64: busybox({ Labels: { 'berth.test/arch': 'arm64' } }, [], 'oci', 'arm64'),
    busyboxUid: busybox({ User: '1000' }),
    busyboxUsername: busybox({ User: 'berth' }),
    busyboxDocker: busybox({ Labels: { 'berth.test/format': 'docker' } }, [], 'docker'),
    httpd: busybox(
      { Entrypoint: ['httpd-foreground'], Cmd: [], ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGTERM' },
      [[
        { type: 'dir', path: 'usr/local' },
        { type: 'dir', path: 'usr/local/bin' },
        { type: 'file', path: 'usr/local/bin/httpd-foreground', data: httpdForeground, mode: 0o755 },
        { type: 'file', path: 'var/www/index.html', data: 'hello from berth\n' },
        { type: 'symlink', path: 'www', target: '/var/www' },
      ]],
    ),
  };
  return cached;
}

/** What the world pushes: repository:tag -> image or index (multi-arch busybox). */
export function testImageTags(images: TestImages): { repository: string; tag: string; image?: BuiltImage; index?: ReturnType<typeof buildIndex>; children?: BuiltImage[] }[] {
  return [
    { repository: 'berth-test/pause', tag: '1', image: images.pause },
    { repository: 'berth-test/busybox', tag: '1', image: images.busybox },
    { repository: 'berth-test/busybox', tag: 'latest', image: images.busybox },
    { repository: 'berth-test/busybox-uid', tag: '1', image: images.busyboxUid },
    { repository: 'berth-test/busybox-username', tag: '1', image: images.busyboxUsername },
    { repository: 'berth-test/busybox-docker', tag: '1', image: images.busyboxDocker },
    { repository: 'berth-test/httpd', tag: '1', image: images.httpd },
    {
      repository: 'berth-test/busybox-multi',
      tag: '1',
      index: buildIndex([images.busybox, images.busyboxArm64]),
      children: [images.busybox, images.busyboxArm64],
    },
  ];
}
