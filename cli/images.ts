import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { parseArgs as parseBerthdArgs } from '../berthd/config.js';
import { configSchema as criConfigSchema, type CriConfig } from '../cri-shim/config.js';
import { hostArchitecture } from '../cri-shim/store/image-store.js';
import { splitFlags, unixPath } from '../lib/config-file.js';
import { BerthError, errorMessage } from '../lib/errors.js';
import { ImageServiceClient, type Image, type ImageStatusRequest, type ImageStatusResponse, type ListImagesRequest, type ListImagesResponse } from '../proto/gen/runtime/v1/api.js';

// `berth images`: images for a node without a registry. import and export go through
// containerd's own import path (ctr, shipped with containerd) in berth-cri's namespace, for its
// snapshotter; berth-cri adopts what lands there at once (it follows containerd's image
// events), so an imported image is usable by a pod as soon as this command returns. ls asks
// berth-cri, so it shows what kubelet sees.

export const imagesUsage = `berth images: images for a node without a registry

Usage:
  berth images ls [--config FILE]
  berth images import [--config FILE] FILE|- ...   docker-archive or OCI archive tarballs ("-": stdin)
  berth images export [--config FILE] -o FILE REF ...

  --config FILE   berth's settings (default $BERTH_CONFIG or /etc/berth/berth.yaml): the cri
                  section gives containerd's socket, the namespace, the snapshotter and berth-cri's
                  socket (defaults when absent)
`;

interface Target {
  cri: CriConfig;
}

/** berth-cri's settings from berth's configuration file, or the defaults without one. */
function target(configFile: string | undefined): Target {
  const argv = configFile ? ['--config', configFile, '--enable', 'cri'] : ['--enable', 'cri'];
  const parsed = parseBerthdArgs(argv, process.env, existsSync);
  if (typeof parsed === 'string') throw new BerthError('invalid-argument', 'unexpected --help');
  return { cri: parsed.config.components.cri ?? criConfigSchema.parse({}) };
}

function imageClient(cri: CriConfig): InstanceType<typeof ImageServiceClient> {
  return new ImageServiceClient(`unix://${unixPath(cri.listen, 'cri.listen')}`, credentials.createInsecure());
}

function call<Req, Res>(fn: (req: Req, cb: (err: Error | null, res?: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res!))));
}

function ctr(cri: CriConfig, args: string[], stdin: 'inherit' | 'ignore'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', ['--address', cri.containerd, '--namespace', cri.namespace, ...args], { stdio: [stdin, 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      process.stderr.write(b);
    });
    child.on('error', (err) => reject(new BerthError('not-available', `cannot run ctr (it comes with containerd): ${err.message}`)));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new BerthError('internal', `ctr ${args[0]} ${args[1]} failed (exit ${code})`))));
  });
}

function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 13);
}

function humanSize(bytes: bigint): string {
  const n = Number(bytes);
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)}MiB` : `${(n / 1024).toFixed(1)}KiB`;
}

function table(images: readonly Image[]): string {
  const rows = [['IMAGE', 'TAG', 'IMAGE ID', 'SIZE', 'PINNED']];
  for (const image of images) {
    const names = image.repoTags.length ? image.repoTags : image.repoDigests.length ? image.repoDigests.map((d) => d.split('@')[0]! + ':<none>') : ['<none>:<none>'];
    for (const name of names) {
      const colon = name.lastIndexOf(':');
      rows.push([name.slice(0, colon), name.slice(colon + 1), shortId(image.id), humanSize(image.size), image.pinned ? 'pinned' : '']);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** The names ctr reports as it unpacks ("unpacking NAME (sha256:...)...done"). */
export function importedNames(ctrOutput: string): string[] {
  return [...ctrOutput.matchAll(/^unpacking (\S+) \(sha256:[0-9a-f]{64}\)/gm)].map((m) => m[1]!);
}

async function waitListed(client: InstanceType<typeof ImageServiceClient>, name: string, timeoutMs = 10_000): Promise<Image | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { image } = await call<ImageStatusRequest, ImageStatusResponse>(client.imageStatus.bind(client), { image: { image: name, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' }, verbose: false });
    if (image || Date.now() > deadline) return image;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runImagesCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(imagesUsage);
    return sub ? 0 : 2;
  }
  let configFile: string | undefined;
  let output: string | undefined;
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--config' || arg === '-o' || arg === '--output') {
      const value = rest[++i];
      if (value === undefined) throw new BerthError('invalid-argument', `${arg}: a value is required`);
      if (arg === '--config') configFile = value;
      else output = value;
    } else if (arg.startsWith('--') && arg !== '--') {
      const flags = splitFlags([arg]);
      if (flags === 'help') return (process.stdout.write(imagesUsage), 0);
      throw new BerthError('invalid-argument', `unknown flag ${arg} (see berth images --help)`);
    } else positional.push(arg);
  }
  const { cri } = target(configFile);
  const client = imageClient(cri);
  try {
    if (sub === 'ls') {
      const { images } = await call<ListImagesRequest, ListImagesResponse>(client.listImages.bind(client), { filter: undefined });
      process.stdout.write(table(images.sort((a, b) => (a.repoTags[0] ?? a.id).localeCompare(b.repoTags[0] ?? b.id))));
      return 0;
    }
    if (sub === 'import') {
      if (positional.length === 0) throw new BerthError('invalid-argument', 'berth images import: name at least one archive (or - for stdin)');
      for (const file of positional) {
        if (file !== '-' && !existsSync(file)) throw new BerthError('invalid-argument', `${file}: no such file`);
        const out = await ctr(cri, ['images', 'import', '--snapshotter', cri.snapshotter, '--platform', `linux/${hostArchitecture}`, '--digests', '--skip-digest-for-named', file], file === '-' ? 'inherit' : 'ignore');
        const names = importedNames(out);
        if (names.length === 0) throw new BerthError('invalid-argument', `${file}: ctr imported no image`);
        for (const name of names) {
          const image = await waitListed(client, name).catch((err: unknown) => {
            throw new BerthError('not-available', `imported ${name}, but berth-cri did not answer (${errorMessage(err)}); it adopts the image when it runs`);
          });
          if (!image) throw new BerthError('internal', `imported ${name}, but berth-cri does not list it`);
          process.stdout.write(`imported ${name} ${image.id}\n`);
        }
      }
      return 0;
    }
    if (sub === 'export') {
      if (!output) throw new BerthError('invalid-argument', 'berth images export: -o FILE is required');
      if (positional.length === 0) throw new BerthError('invalid-argument', 'berth images export: name at least one image');
      // ctr wants containerd's record names: resolve each reference as berth-cri does (busybox ->
      // docker.io/library/busybox:latest, an ID -> one of its names).
      const names: string[] = [];
      for (const ref of positional) {
        const image = await waitListed(client, ref, 0);
        if (!image) throw new BerthError('not-found', `image ${ref} is not on this node`);
        names.push(image.repoTags[0] ?? image.repoDigests[0] ?? image.id);
      }
      await ctr(cri, ['images', 'export', '--platform', `linux/${hostArchitecture}`, output, ...names], 'ignore');
      process.stdout.write(`exported ${names.join(' ')} to ${output}\n`);
      return 0;
    }
    throw new BerthError('invalid-argument', `berth images: unknown subcommand ${sub} (ls, import, export)`);
  } finally {
    client.close();
  }
}
