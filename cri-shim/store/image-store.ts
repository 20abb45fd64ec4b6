import type { Logger } from 'pino';
import { errorMessage } from '../../lib/errors.js';
import type { Image as CriImage } from '../../proto/gen/runtime/v1/api.js';
import type { ContainerdClient } from '../containerd/client.js';
import { readJsonBlob } from '../containerd/content.js';
import { listImageRecords } from '../containerd/images.js';
import { chainIds } from '../containerd/snapshots.js';
import type { ImageConfig } from '../oci/sandbox-spec.js';
import { parseReference } from '../registry/reference.js';
import { pinnedImageMatcher, type PinnedImageMatcher } from './pinned-images.js';

// berth's images, indexed by image ID (the config digest) with every name pointing at each:
// tags (`host/repo:tag`), digest references (`host/repo@sha256:...`) and the ID itself, each a
// containerd image record. So a tag, an untagged name (:latest), a digest reference and the ID
// all resolve to the same entry, and ImageStatus answers the same message for each.

export const managedLabel = 'io.berth.cri.image';

/** What the spec builders read from an image config, plus its declared volumes. */
export interface ImageRunConfig extends ImageConfig {
  volumes: string[];
}

export interface ImageEntry {
  id: string;
  manifestDigest: string;
  repoTags: Set<string>;
  repoDigests: Set<string>;
  size: bigint;
  diffIds: string[];
  /** The snapshot a container's rootfs is prepared from. */
  topChainId: string;
  config: ImageRunConfig;
  layers: { digest: string; mediaType: string; size: bigint }[];
  /** containerd has a record named by the image ID (berth-cri's pulls make one). */
  idRecord?: boolean;
}

interface ManifestJson {
  mediaType?: string;
  config: { digest: string; size: number; mediaType: string };
  layers: { digest: string; size: number; mediaType: string }[];
  manifests?: { digest: string; mediaType: string; size: number; platform?: { os: string; architecture: string; variant?: string } }[];
}

export interface ConfigJson {
  config?: {
    User?: string;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    StopSignal?: string;
    Volumes?: Record<string, unknown> | null;
  };
  rootfs?: { diff_ids?: string[] };
}

export const hostArchitecture = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;

export function runConfigOf(config: ConfigJson): ImageRunConfig {
  const c = config.config ?? {};
  return {
    user: c.User ?? '',
    env: c.Env ?? [],
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    workingDir: c.WorkingDir ?? '',
    stopSignal: c.StopSignal ?? '',
    volumes: Object.keys(c.Volumes ?? {}),
  };
}

/** CRI Image.uid / Image.username from the config's User ("uid", "name", with ":group" ignored). */
export function imageUser(user: string): { uid?: bigint; username: string } {
  const name = user.split(':')[0] ?? '';
  if (name === '') return { username: '' };
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: '' };
  return { username: name };
}

export class ImageStore {
  private readonly byId = new Map<string, ImageEntry>();
  /** Every name (tag ref, digest ref) -> image ID. */
  private readonly byName = new Map<string, string>();

  private readonly pinnedName: PinnedImageMatcher;

  constructor(
    private readonly client: ContainerdClient,
    private readonly log: Logger,
    pinnedImages: readonly string[] = [],
  ) {
    this.pinnedName = pinnedImageMatcher(pinnedImages);
  }

  /**
   * Rebuild the index from containerd's image records (on start, and after the image event
   * stream was lost). Every image in berth's namespace is adopted, whoever made it (a pull of
   * ours, `ctr images import`, `berth images import`), as containerd's CRI does in k8s.io.
   */
  async load(): Promise<void> {
    const records = await listImageRecords(this.client);
    this.byId.clear();
    this.byName.clear();
    for (const record of records) {
      if (!record.target) continue;
      try {
        const entry = await this.entryFor(record.target.digest, record.target.mediaType);
        this.addName(entry, record.name);
      } catch (err) {
        this.log.warn({ image: record.name, err: errorMessage(err) }, 'skipping image whose content is unreadable');
      }
    }
  }

  /** Read a manifest (choosing this platform from an index) and its config from containerd. */
  async entryFor(targetDigest: string, mediaType: string): Promise<ImageEntry> {
    let manifestDigest = targetDigest;
    let manifest = await readJsonBlob<ManifestJson>(this.client, targetDigest);
    if (manifest.manifests || /index|manifest\.list/.test(mediaType)) {
      const chosen = (manifest.manifests ?? []).find((m) => m.platform?.os === 'linux' && m.platform.architecture === hostArchitecture);
      if (!chosen) throw new Error(`index ${targetDigest} has no linux/${hostArchitecture} manifest`);
      manifestDigest = chosen.digest;
      manifest = await readJsonBlob<ManifestJson>(this.client, chosen.digest);
    }
    const id = manifest.config.digest;
    const known = this.byId.get(id);
    if (known) return known;
    const config = await readJsonBlob<ConfigJson>(this.client, id);
    const diffIds = config.rootfs?.diff_ids ?? [];
    const size = manifest.layers.reduce((n, l) => n + BigInt(l.size), BigInt(manifest.config.size));
    const entry: ImageEntry = {
      id,
      manifestDigest,
      repoTags: new Set(),
      repoDigests: new Set(),
      size,
      diffIds,
      topChainId: chainIds(diffIds).at(-1) ?? '',
      config: runConfigOf(config),
      layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: BigInt(l.size) })),
    };
    return entry;
  }

  /** Register `name` (a tag ref, digest ref, or the ID) for an entry; a moved tag leaves its old image. */
  addName(entry: ImageEntry, name: string): void {
    this.byId.set(entry.id, entry);
    if (name === entry.id) return void (entry.idRecord = true);
    const previous = this.byName.get(name);
    if (previous && previous !== entry.id) {
      const old = this.byId.get(previous);
      old?.repoTags.delete(name);
      old?.repoDigests.delete(name);
    }
    this.byName.set(name, entry.id);
    if (name.includes('@')) entry.repoDigests.add(name);
    else entry.repoTags.add(name);
  }

  /**
   * A CRI image string: a reference, normalized the way Docker and containerd do (`busybox` is
   * `docker.io/library/busybox:latest`), or an ID (`sha256:<hex>`, bare hex, or a unique hex
   * prefix of 12+).
   */
  find(ref: string): ImageEntry | undefined {
    const name = normalizedName(ref);
    if (name) {
      const id = this.byName.get(name);
      if (id) return this.byId.get(id);
    }
    const hex = ref.startsWith('sha256:') ? ref.slice(7) : ref;
    if (!/^[0-9a-f]{12,64}$/.test(hex)) return undefined;
    const exact = this.byId.get(`sha256:${hex}`);
    if (exact) return exact;
    const matches = [...this.byId.values()].filter((e) => e.id.slice(7).startsWith(hex));
    return matches.length === 1 ? matches[0] : undefined;
  }

  /**
   * Whether the image `id` is pinned (kubelet's GC skips it): it is the sandbox image, or one of
   * its names (tag or digest reference) matches a configured pinned-image pattern.
   */
  isPinned(id: string, sandboxImage: string): boolean {
    if (this.find(sandboxImage)?.id === id) return true;
    const entry = this.byId.get(id);
    return !!entry && [...entry.repoTags, ...entry.repoDigests].some(this.pinnedName);
  }

  byImageId(id: string): ImageEntry | undefined {
    return this.byId.get(id);
  }

  /** All names of an entry, including its ID record. */
  namesOf(entry: ImageEntry): string[] {
    return [...entry.repoTags, ...entry.repoDigests, entry.id];
  }

  /**
   * A name deleted by another client: the name goes, and the image with it when it was the
   * image's last name (the ID record berth-cri makes counts as one). True if it was known.
   */
  forgetName(name: string): boolean {
    const id = this.byName.get(name) ?? (this.byId.has(name) ? name : undefined);
    if (id === undefined) return false;
    const entry = this.byId.get(id)!;
    this.byName.delete(name);
    entry.repoTags.delete(name);
    entry.repoDigests.delete(name);
    if (name === id) entry.idRecord = false;
    if (entry.repoTags.size === 0 && entry.repoDigests.size === 0 && !entry.idRecord) this.byId.delete(id);
    return true;
  }

  remove(entry: ImageEntry): void {
    for (const n of [...entry.repoTags, ...entry.repoDigests]) this.byName.delete(n);
    this.byId.delete(entry.id);
  }

  all(): ImageEntry[] {
    return [...this.byId.values()];
  }

  toCri(entry: ImageEntry, pinned = false): CriImage {
    const user = imageUser(entry.config.user);
    return {
      id: entry.id,
      repoTags: [...entry.repoTags].sort(),
      repoDigests: [...entry.repoDigests].sort(),
      size: entry.size,
      uid: user.uid === undefined ? undefined : { value: user.uid },
      username: user.username,
      spec: { image: entry.id, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' },
      pinned,
    };
  }
}

function normalizedName(ref: string): string | undefined {
  try {
    return parseReference(ref).normalized;
  } catch {
    return undefined;
  }
}
