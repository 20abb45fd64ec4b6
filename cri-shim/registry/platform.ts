import { BerthError } from '../../lib/errors.js';

// Choosing one image from an OCI index / Docker manifest list (image-spec "Image Index"): the
// entry whose platform is this node's, preferring an exact variant, as containerd's matcher does.

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform & { 'os.version'?: string; 'os.features'?: string[] };
  annotations?: Record<string, string>;
}

export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

// Variants a CPU of each kind also runs; arm64 is v8 when not said (containerd normalizes so).
function defaultVariant(architecture: string): string | undefined {
  return architecture === 'arm64' ? 'v8' : undefined;
}

/** The index entry for `platform`, or a not-found error listing the platforms the index has. */
export function selectPlatform(index: { manifests?: Descriptor[] }, platform: Platform): Descriptor {
  const list = (index.manifests ?? []).filter((m) => m.platform);
  const wanted = platform.variant ?? defaultVariant(platform.architecture);
  const sameArch = list.filter((m) => m.platform!.os === platform.os && m.platform!.architecture === platform.architecture);
  const match =
    sameArch.find((m) => (m.platform!.variant ?? defaultVariant(m.platform!.architecture)) === wanted) ??
    // An entry without a variant runs on any variant of its architecture.
    sameArch.find((m) => !m.platform!.variant);
  if (!match) {
    const have = [...new Set(list.map((m) => platformString(m.platform!)))].join(', ');
    throw new BerthError('not-found', `no manifest for ${platformString(platform)} in the image index (it has: ${have || 'no platforms'})`);
  }
  return match;
}

/** Whether a media type is an index / manifest list rather than a single image manifest. */
export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === 'application/vnd.oci.image.index.v1+json' || mediaType === 'application/vnd.docker.distribution.manifest.list.v2+json';
}
