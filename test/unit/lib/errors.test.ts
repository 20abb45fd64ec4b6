import { describe, expect, it } from 'vitest';
import { BerthError, CniErrorCode, GrpcStatus } from '../../../lib/errors.js';

describe('BerthError codes', () => {
  it('maps kinds to CNI and gRPC codes', () => {
    expect(new BerthError('invalid-environment', 'x').cniCode).toBe(CniErrorCode.InvalidEnvironment);
    expect(new BerthError('not-found', 'x').grpcCode).toBe(GrpcStatus.NOT_FOUND);
    expect(new BerthError('already-exists', 'x').grpcCode).toBe(GrpcStatus.ALREADY_EXISTS);
    expect(new BerthError('internal', 'x', { cniCode: 123 }).cniCode).toBe(123);
    expect(new BerthError('not-available', 'x').cniCode).toBe(50);
  });
});
