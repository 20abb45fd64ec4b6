// One error type for the whole suite. Each kind maps to a CNI error code (SPEC "Error" section)
// and to a gRPC status code, so a CNI plugin and a gRPC daemon report the same failure the same
// way. Messages name the offending field or variable and its value.

export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotAvailableDegraded: 51,
  // 100+ is plugin specific; the reference plugins use 999 for everything else.
  Generic: 999,
} as const;

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type ErrorKind =
  | 'incompatible-version'
  | 'unsupported-field'
  | 'unknown-container'
  | 'invalid-environment'
  | 'io'
  | 'decode'
  | 'invalid-config'
  | 'invalid-argument'
  | 'try-again'
  | 'not-available'
  | 'not-available-degraded'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'resource-exhausted'
  | 'aborted'
  | 'out-of-range'
  | 'unimplemented'
  | 'deadline-exceeded'
  | 'internal';

const codes: Record<ErrorKind, { cni: number; grpc: number }> = {
  'incompatible-version': { cni: CniErrorCode.IncompatibleVersion, grpc: GrpcStatus.FAILED_PRECONDITION },
  'unsupported-field': { cni: CniErrorCode.UnsupportedField, grpc: GrpcStatus.INVALID_ARGUMENT },
  'unknown-container': { cni: CniErrorCode.UnknownContainer, grpc: GrpcStatus.NOT_FOUND },
  'invalid-environment': { cni: CniErrorCode.InvalidEnvironment, grpc: GrpcStatus.INVALID_ARGUMENT },
  io: { cni: CniErrorCode.IoFailure, grpc: GrpcStatus.INTERNAL },
  decode: { cni: CniErrorCode.DecodeFailure, grpc: GrpcStatus.INVALID_ARGUMENT },
  'invalid-config': { cni: CniErrorCode.InvalidNetworkConfig, grpc: GrpcStatus.INVALID_ARGUMENT },
  'invalid-argument': { cni: CniErrorCode.InvalidNetworkConfig, grpc: GrpcStatus.INVALID_ARGUMENT },
  'try-again': { cni: CniErrorCode.TryAgainLater, grpc: GrpcStatus.UNAVAILABLE },
  'not-available': { cni: CniErrorCode.PluginNotAvailable, grpc: GrpcStatus.UNAVAILABLE },
  'not-available-degraded': { cni: CniErrorCode.PluginNotAvailableDegraded, grpc: GrpcStatus.UNAVAILABLE },
  'not-found': { cni: CniErrorCode.Generic, grpc: GrpcStatus.NOT_FOUND },
  'already-exists': { cni: CniErrorCode.Generic, grpc: GrpcStatus.ALREADY_EXISTS },
  'failed-precondition': { cni: CniErrorCode.Generic, grpc: GrpcStatus.FAILED_PRECONDITION },
  'resource-exhausted': { cni: CniErrorCode.Generic, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  aborted: { cni: CniErrorCode.TryAgainLater, grpc: GrpcStatus.ABORTED },
  'out-of-range': { cni: CniErrorCode.Generic, grpc: GrpcStatus.OUT_OF_RANGE },
  unimplemented: { cni: CniErrorCode.Generic, grpc: GrpcStatus.UNIMPLEMENTED },
  'deadline-exceeded': { cni: CniErrorCode.Generic, grpc: GrpcStatus.DEADLINE_EXCEEDED },
  internal: { cni: CniErrorCode.Generic, grpc: GrpcStatus.INTERNAL },
};

export class BerthError extends Error {
  readonly kind: ErrorKind;
  /** Longer explanation, e.g. the output of a failed command (CNI "details"). */
  readonly details: string | undefined;
  /** A CNI code that does not follow from the kind, e.g. relayed from a delegated plugin. */
  private readonly explicitCniCode: number | undefined;

  constructor(kind: ErrorKind, message: string, options: { details?: string; cause?: unknown; cniCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BerthError';
    this.kind = kind;
    this.details = options.details;
    this.explicitCniCode = options.cniCode;
  }

  get cniCode(): number {
    return this.explicitCniCode ?? codes[this.kind].cni;
  }

  get grpcCode(): number {
    return codes[this.kind].grpc;
  }
}

/** Wrap anything thrown into a BerthError, keeping a BerthError as it is. */
export function asBerthError(err: unknown, fallback: ErrorKind = 'internal'): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const kind = code && code.startsWith('E') && 'syscall' in err ? 'io' : fallback;
    return new BerthError(kind, err.message, { cause: err });
  }
  return new BerthError(fallback, String(err));
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
