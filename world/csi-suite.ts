import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { CsiDriver, MiB, type CsiDriverOptions } from './csi.js';
import { isRoot, trySh } from './netns.js';

// The life of a berth-csi around one describe block: started on a fresh root before the tests,
// its log printed when a test fails, stopped and every mount, loop device and file it made
// removed at the end (also when tests failed).

export function useCsiDriver(set: (driver: CsiDriver) => void, options: CsiDriverOptions = {}): void {
  let driver: CsiDriver | undefined;
  beforeAll(async () => {
    driver = await CsiDriver.start(options);
    set(driver);
  }, 60_000);

  afterEach((ctx) => {
    if (driver && ctx.task.result?.state === 'fail') console.log(driver.log().slice(-4000));
  });

  afterAll(async () => {
    await driver?.stop();
  });
}

/** Expect a call to fail with a gRPC status code and a message naming `field`. */
export async function expectStatus(call: Promise<unknown>, code: number, field?: string | RegExp): Promise<ServiceError> {
  const err = await call.then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(err, 'the call succeeded').toBeDefined();
  expect(err!.code, `${err!.details}`).toBe(code);
  if (field !== undefined) expect(err!.details).toMatch(field);
  return err!;
}

/** Why the CSI integration tests cannot run here (printed by the caller), or undefined. */
export function csiSkipReason(mkfs: readonly ('ext4' | 'xfs')[] = ['ext4']): string | undefined {
  if (!isRoot) return 'not root';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  for (const fs of mkfs) {
    if (trySh(`mkfs.${fs}`, ['-V']).code !== 0) return `mkfs.${fs} is not installed (${fs === 'xfs' ? 'xfsprogs' : 'e2fsprogs'})`;
  }
  return undefined;
}

/** Write real bytes over a whole file, so copying it costs time. */
export function fillWithData(file: string, size: number, byte = 0xa5): void {
  const chunk = Buffer.alloc(MiB, byte);
  const fd = openSync(file, 'r+');
  try {
    for (let off = 0; off < size; off += MiB) writeSync(fd, chunk, 0, MiB, off);
  } finally {
    closeSync(fd);
  }
}

/** Poll `cond` (without blocking the event loop) for up to 10 s. */
export async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error('condition not met within 10 s');
}
