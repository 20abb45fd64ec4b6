import { statfs } from 'node:fs/promises';
import type { ImageFsInfoResponse } from '../../proto/gen/runtime/v1/api.js';
import { type CriRuntime, nowNanos } from '../runtime.js';

// ImageFsInfo: the filesystem holding image layers and writable layers.

export async function imageFsInfo(rt: CriRuntime): Promise<ImageFsInfoResponse> {
  // The snapshotter's directory under containerd's root holds image layers and writable layers.
  const at = nowNanos();
  let used = 0n;
  for (const e of rt.images.all()) used += e.size;
  let inodes: bigint | undefined;
  try {
    const st = await statfs(rt.config.root, { bigint: true });
    inodes = st.files - st.ffree;
  } catch {
    inodes = undefined;
  }
  const usage = { timestamp: at, fsId: { mountpoint: rt.config.root }, usedBytes: { value: used }, inodesUsed: inodes === undefined ? undefined : { value: inodes } };
  return { imageFilesystems: [usage], containerFilesystems: [] };
}
