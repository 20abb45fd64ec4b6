import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import {
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  status,
  type Client,
  type ChannelOptions,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import { asBerthError } from '../errors.js';
import { rewritingSocket } from './h2-authority.js';

// gRPC over unix sockets for the daemons (berth-cri, berth-csi, berth-gpu) and their clients:
// bind with a stale-socket check and restrictive permissions, and turn a BerthError thrown by a
// handler into the matching status code with a message that names the field.

/** kubelet sends and accepts CRI messages up to 16 MiB (e.g. ListContainers on a busy node). */
export const maxMessageBytes = 16 * 1024 * 1024;

/**
 * grpc-js keeps channelz statistics for every call (timestamps, counters, listeners on each
 * stream) unless told not to. berth serves no channelz service, so nobody can read them: off, for
 * servers and clients alike, which takes that work off every RPC.
 */
export const noChannelz = { 'grpc.enable_channelz': 0 } as const;

const channelOptions: ChannelOptions = {
  'grpc.max_receive_message_length': maxMessageBytes,
  'grpc.max_send_message_length': maxMessageBytes,
  ...noChannelz,
};

export interface UnaryLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * A unary handler from an async function: the result is sent, a thrown error becomes a gRPC
 * status (BerthError kinds map to codes; anything else is INTERNAL).
 */
export function unary<Req, Res>(name: string, fn: (req: Req, metadata: Metadata) => Promise<Res>, log?: UnaryLogger): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = process.hrtime.bigint();
    fn(call.request, call.metadata).then(
      (res) => {
        log?.debug({ rpc: name, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'rpc done');
        callback(null, res);
      },
      (err: unknown) => {
        const e = asBerthError(err);
        // A failed command's stderr says why; the caller (kubelet's events, crictl) should see it.
        const message = e.details ? `${e.message}: ${e.details}` : e.message;
        log?.warn({ rpc: name, code: e.grpcCode, err: message }, 'rpc failed');
        callback({ code: e.grpcCode, details: message, metadata: new Metadata(), name: e.name, message });
      },
    );
  };
}

/** Remove a socket file left by a previous run; refuse to remove anything that is not a socket. */
function clearStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export interface UnixServer {
  server: Server;
  socketPath: string;
  close(): Promise<void>;
}

/** Serve the given services on a unix socket (mode 0660 by default). */
export async function serveUnix(
  socketPath: string,
  services: [ServiceDefinition, UntypedServiceImplementation][],
  options: { mode?: number; onConnectionError?: (err: Error) => void } = {},
): Promise<UnixServer> {
  mkdirSync(dirname(socketPath), { recursive: true });
  clearStaleSocket(socketPath);
  const server = new Server(channelOptions);
  for (const [definition, implementation] of services) server.addService(definition, implementation);
  // We accept the connections ourselves and hand them to grpc-js through the authority
  // rewriter (lib/grpc/h2-authority.ts), so Go clients that send the socket path as :authority work.
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = createServer((socket) => {
    const served = rewritingSocket(socket, (err) => options.onConnectionError?.(err));
    if (served) injector.injectConnection(served);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, options.mode ?? 0o660);
  return {
    server,
    socketPath,
    // Resolves once the listening socket is really closed: libuv unlinks a pipe's path when
    // its handle closes, which must not happen after a new server has bound the same path.
    close: () =>
      new Promise<void>((resolve) => {
        let pending = 2;
        const done = (): void => {
          if (--pending > 0) return;
          try { unlinkSync(socketPath); } catch { /* already gone */ }
          resolve();
        };
        listener.close(() => done());
        server.tryShutdown(() => {
          injector.destroy();
          done();
        });
      }),
  };
}

/** A generated client (e.g. RuntimeServiceClient) connected to a unix socket. */
export function unixClient<C extends Client>(ClientCtor: new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options?: ChannelOptions) => C, socketPath: string): C {
  return new ClientCtor(`unix://${socketPath}`, credentials.createInsecure(), channelOptions);
}

/** Await a unary client call. */
export function callUnary<Req, Res>(
  method: (req: Req, callback: (err: Error | null, res: Res) => void) => unknown,
  request: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => method(request, (err, res) => (err ? reject(err) : resolve(res))));
}

export { status as grpcStatus };
