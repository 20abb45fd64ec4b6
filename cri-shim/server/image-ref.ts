import { parseReference } from '../registry/reference.js';
import type { CriRuntime } from '../runtime.js';
import type { ImageEntry } from '../store/image-store.js';

// How a CRI image string finds a local image: as a reference (normalized the way Docker and
// containerd do: `busybox` is `docker.io/library/busybox:latest`) or as an image ID.

export function normalizedName(ref: string): string | undefined {
  try {
    return parseReference(ref).normalized;
  } catch {
    return undefined;
  }
}

export function findImage(rt: CriRuntime, ref: string): ImageEntry | undefined {
  return rt.images.find(normalizedName(ref), ref);
}
