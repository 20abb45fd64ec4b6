import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { CsiDriver, type CsiDriverOptions } from './csi.js';

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
