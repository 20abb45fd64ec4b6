import { Metadata, credentials, status, type ChannelOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { BerthError, type ErrorKind } from '../../lib/errors.js';
import { maxMessageBytes, noChannelz } from '../../lib/grpc/unix-socket.js';
import { ContainersClient } from '../../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import { ContentClient } from '../../proto/gen/github.com/containerd/containerd/api/services/content/v1/content.js';
import { DiffClient } from '../../proto/gen/github.com/containerd/containerd/api/services/diff/v1/diff.js';
import { EventsClient } from '../../proto/gen/github.com/containerd/containerd/api/services/events/v1/events.js';
import { ImagesClient } from '../../proto/gen/github.com/containerd/containerd/api/services/images/v1/images.js';
import { IntrospectionClient } from '../../proto/gen/github.com/containerd/containerd/api/services/introspection/v1/introspection.js';
import { LeasesClient } from '../../proto/gen/github.com/containerd/containerd/api/services/leases/v1/leases.js';
import { SnapshotsClient } from '../../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import { TasksClient } from '../../proto/gen/github.com/containerd/containerd/api/services/tasks/v1/tasks.js';
import { VersionClient } from '../../proto/gen/github.com/containerd/containerd/api/services/version/v1/version.js';

// One connection to containerd, with a client per service and every call scoped to berth's
// namespace (the `containerd-namespace` header), so berth's pods, images and snapshots never mix
// with those of containerd's own CRI plugin (namespace k8s.io) on the same daemon.

export const defaultNamespace = 'berth.io';

/** gRPC status from containerd -> BerthError kind, keeping containerd's message. */
const kindOf: Partial<Record<number, ErrorKind>> = {
  [status.NOT_FOUND]: 'not-found',
  [status.ALREADY_EXISTS]: 'already-exists',
  [status.FAILED_PRECONDITION]: 'failed-precondition',
  [status.INVALID_ARGUMENT]: 'invalid-argument',
  [status.UNAVAILABLE]: 'not-available',
  [status.UNIMPLEMENTED]: 'unimplemented',
  [status.RESOURCE_EXHAUSTED]: 'resource-exhausted',
};

export class ContainerdError extends BerthError {
  readonly grpcStatus: number;
  constructor(operation: string, err: ServiceError) {
    super(kindOf[err.code] ?? 'internal', `containerd ${operation}: ${err.details || err.message}`, { cause: err });
    this.grpcStatus = err.code;
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ContainerdError && err.grpcStatus === status.NOT_FOUND;
}

export function isAlreadyExists(err: unknown): boolean {
  return err instanceof ContainerdError && err.grpcStatus === status.ALREADY_EXISTS;
}

export interface CallOptions {
  /** Resources created under a lease are kept from garbage collection until it is deleted. */
  lease?: string;
  deadlineMs?: number;
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;

export class ContainerdClient {
  readonly containers: InstanceType<typeof ContainersClient>;
  readonly content: InstanceType<typeof ContentClient>;
  readonly diff: InstanceType<typeof DiffClient>;
  readonly events: InstanceType<typeof EventsClient>;
  readonly images: InstanceType<typeof ImagesClient>;
  readonly introspection: InstanceType<typeof IntrospectionClient>;
  readonly leases: InstanceType<typeof LeasesClient>;
  readonly snapshots: InstanceType<typeof SnapshotsClient>;
  readonly tasks: InstanceType<typeof TasksClient>;
  readonly version: InstanceType<typeof VersionClient>;
  private readonly all: Client[];
  /**
   * Told of every unary call as it is made (berth-cri sets it at log level trace): how the
   * containerd round trips of each CRI RPC are counted (bench/cri with BENCH_CRI_LOG_LEVEL=trace).
   */
  onCall: ((operation: string) => void) | undefined;

  constructor(
    readonly socketPath: string,
    readonly namespace = defaultNamespace,
  ) {
    const address = `unix://${socketPath}`;
    const creds = credentials.createInsecure();
    const options: ChannelOptions = {
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      ...noChannelz,
    };
    // One channel for all services: grpc-js shares a subchannel between clients with equal
    // address and options, so this is a single unix socket connection.
    this.containers = new ContainersClient(address, creds, options);
    this.content = new ContentClient(address, creds, options);
    this.diff = new DiffClient(address, creds, options);
    this.events = new EventsClient(address, creds, options);
    this.images = new ImagesClient(address, creds, options);
    this.introspection = new IntrospectionClient(address, creds, options);
    this.leases = new LeasesClient(address, creds, options);
    this.snapshots = new SnapshotsClient(address, creds, options);
    this.tasks = new TasksClient(address, creds, options);
    this.version = new VersionClient(address, creds, options);
    this.all = [this.containers, this.content, this.diff, this.events, this.images, this.introspection, this.leases, this.snapshots, this.tasks, this.version];
  }

  metadata(options: CallOptions = {}): Metadata {
    const md = new Metadata();
    md.set('containerd-namespace', this.namespace);
    if (options.lease) md.set('containerd-lease', options.lease);
    return md;
  }

  /**
   * Await one unary call: `call(md, cb)` issues it with our metadata. Errors become
   * ContainerdError naming the operation.
   */
  unary<Res>(operation: string, call: (md: Metadata, callback: Callback<Res>) => unknown, options: CallOptions = {}): Promise<Res> {
    this.onCall?.(operation);
    return new Promise((resolve, reject) => {
      call(this.metadata(options), (err, res) => (err ? reject(new ContainerdError(operation, err)) : resolve(res)));
    });
  }

  /** Wait until the connection is up (or fail after `timeoutMs`). */
  waitReady(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.version.waitForReady(Date.now() + timeoutMs, (err) =>
        err ? reject(new BerthError('not-available', `containerd at ${this.socketPath} is not answering: ${err.message}`)) : resolve(),
      );
    });
  }

  close(): void {
    for (const c of this.all) c.close();
  }
}
