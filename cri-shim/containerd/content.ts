import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ServiceError } from '@grpc/grpc-js';
import { WriteAction, type Info, type WriteContentRequest, type WriteContentResponse } from '../../proto/gen/github.com/containerd/containerd/api/services/content/v1/content.js';
import { ContainerdError, isAlreadyExists, isNotFound, type CallOptions, type ContainerdClient } from './client.js';

// containerd's content store over gRPC: blobs in by one Write stream per blob (the store checks
// size and digest at commit), out by a Read stream. A blob that already exists is a success.

const chunkBytes = 1 << 20;

export async function contentInfo(client: ContainerdClient, digest: string): Promise<Info | undefined> {
  try {
    const res = await client.unary<{ info?: Info }>('content info', (md, cb) => client.content.info({ digest }, md, cb));
    return res.info;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Set labels on a blob (e.g. the gc.ref labels that keep an image's children alive). */
export async function setContentLabels(client: ContainerdClient, digest: string, labels: Record<string, string>, options: CallOptions = {}): Promise<void> {
  const info = await contentInfo(client, digest);
  const merged = { ...(info?.labels ?? {}), ...labels };
  await client.unary(
    'content update',
    (md, cb) =>
      client.content.update(
        { info: { digest, size: 0n, labels: merged }, updateMask: Object.keys(labels).map((k) => `labels.${k}`) },
        md,
        cb,
      ),
    options,
  );
}

export interface WriteBlobOptions extends CallOptions {
  size: number;
  labels?: Record<string, string>;
}

/**
 * Stream `source` into the content store as `digest`. Each call uses its own ingest ref, so two
 * pulls of one blob never lock each other out; the second commit finds the blob and succeeds.
 */
export function writeBlob(client: ContainerdClient, digest: string, source: Readable | Buffer, options: WriteBlobOptions): Promise<void> {
  const ref = `berth-${digest.replace(':', '-')}-${randomBytes(4).toString('hex')}`;
  return new Promise<void>((resolve, reject) => {
    const stream = client.content.write(client.metadata(options));
    let offset = 0n;
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      if (err === undefined || isAlreadyExists(err)) resolve();
      else reject(err);
    };
    stream.on('data', (res: WriteContentResponse) => {
      if (res.action === WriteAction.COMMIT) {
        finish();
        stream.end();
      }
    });
    stream.on('error', (err: ServiceError) => finish(new ContainerdError(`content write ${digest}`, err)));
    stream.on('end', () => finish(settled ? undefined : new Error(`containerd closed the write of ${digest} before the commit`)));

    const send = (req: Partial<WriteContentRequest>): Promise<void> =>
      new Promise((ok) => {
        const full: WriteContentRequest = { action: WriteAction.WRITE, ref, total: 0n, expected: '', offset: 0n, data: Buffer.alloc(0), labels: {}, ...req };
        if (stream.write(full)) ok();
        else stream.once('drain', () => ok());
      });
    const commit = (): Promise<void> =>
      send({ action: WriteAction.COMMIT, total: BigInt(options.size), expected: digest, offset, labels: options.labels ?? {} });

    (async () => {
      if (Buffer.isBuffer(source)) {
        for (let at = 0; at < source.length && !settled; at += chunkBytes) {
          const data = source.subarray(at, at + chunkBytes);
          await send({ data, offset, total: BigInt(options.size) });
          offset += BigInt(data.length);
        }
      } else {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          if (settled) break;
          await send({ data: chunk, offset, total: BigInt(options.size) });
          offset += BigInt(chunk.length);
        }
      }
      if (!settled) await commit();
    })().catch((err: unknown) => {
      stream.cancel();
      finish(err);
      // The source failed (a broken or stalled download): drop the partial ingest now rather than
      // leave its bytes in containerd's ingest directory until a garbage collection.
      abortIngest(client, ref, options);
    });
  });
}

/** Drop a partial write; containerd may still hold the ref for a moment after the cancel, so a few tries. */
function abortIngest(client: ContainerdClient, ref: string, options: CallOptions, tries = 5): void {
  client
    .unary('content abort', (md, cb) => client.content.abort({ ref }, md, cb), options)
    .catch((err: unknown) => {
      if (isNotFound(err) || tries <= 1) return;
      setTimeout(() => abortIngest(client, ref, options, tries - 1), 100).unref();
    });
}

/** Read a whole (small) blob, e.g. a manifest or an image config. */
export function readBlob(client: ContainerdClient, digest: string, maxBytes = 32 * 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const stream = client.content.read({ digest, offset: 0n, size: 0n }, client.metadata());
    stream.on('data', (res: { data: Buffer }) => {
      size += res.data.length;
      if (size > maxBytes) {
        stream.cancel();
        reject(new Error(`blob ${digest} is larger than ${maxBytes} bytes`));
        return;
      }
      parts.push(res.data);
    });
    stream.on('error', (err: ServiceError) => {
      if (err.code !== 1 /* CANCELLED, by us */) reject(new ContainerdError(`content read ${digest}`, err));
    });
    stream.on('end', () => resolve(Buffer.concat(parts)));
  });
}

export async function readJsonBlob<T>(client: ContainerdClient, digest: string): Promise<T> {
  return JSON.parse((await readBlob(client, digest)).toString('utf8')) as T;
}
