import { connect, type Socket } from 'node:net';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { GrpcStatus } from '../../lib/errors.js';
import { Request, Response } from '../../proto/gen/github.com/containerd/ttrpc/request.js';
import { ContainerdError } from './client.js';

// A client of ttrpc, the RPC containerd's shims serve their Task API with
// (github.com/containerd/ttrpc, PROTOCOL.md there). A frame is a 10-byte header (the data's
// length and the stream ID as big-endian u32, then a type and a flags byte) and the data: a
// protobuf Request (type 1) from us on an odd stream ID, a Response (type 2) back on the same ID.
// Unary calls only. What comes back is bounded: a frame over the protocol's 4 MiB, one of a type
// a unary client never gets, or one that does not decode ends the connection, and every call on
// it fails; the next call connects again. Errors are the shim's gRPC status, as ContainerdError,
// so callers handle them as they handle containerd's.

const headerBytes = 10;
/** The protocol's limit on a frame's data. */
export const maxTtrpcDataBytes = 4 << 20;
const typeRequest = 1;
const typeResponse = 2;

interface Pending {
  operation: string;
  /** The connection the call went out on: only its end fails the call. */
  socket: Socket;
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

function callError(operation: string, code: number, message: string): ContainerdError {
  const err = Object.assign(new Error(message), { code, details: message, metadata: new Metadata() }) as ServiceError;
  return new ContainerdError(operation, err);
}

export class TtrpcClient {
  private socket?: Socket;
  private nextStream = 1;
  private readonly pending = new Map<number, Pending>();

  /**
   * `metadata` goes with every call (containerd's namespace: "containerd-namespace-ttrpc");
   * `onClose` is told when a connection ends (the shim exited, or the connection was dropped).
   */
  constructor(
    readonly path: string,
    private readonly metadata: Record<string, string> = {},
    private readonly onClose?: () => void,
  ) {}

  /**
   * One unary call of `service`/`method` with an encoded request; resolves with the encoded
   * response. `timeoutMs` (0: none) goes to the server too, as ttrpc's timeout_nano.
   */
  call(operation: string, service: string, method: string, payload: Uint8Array, timeoutMs = 0): Promise<Uint8Array> {
    const socket = this.connection();
    const id = this.nextStream;
    // Client streams are odd; past 2^31 the IDs start again (those calls are long answered).
    this.nextStream = this.nextStream >= 0x7fff_fffd ? 1 : this.nextStream + 2;
    const data = Request.encode({
      service,
      method,
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      timeoutNano: BigInt(timeoutMs) * 1_000_000n,
      metadata: Object.entries(this.metadata).map(([key, value]) => ({ key, value })),
    }).finish();
    const header = Buffer.alloc(headerBytes);
    header.writeUInt32BE(data.length, 0);
    header.writeUInt32BE(id, 4);
    header[8] = typeRequest;
    return new Promise((resolve, reject) => {
      const call: Pending = { operation, socket, resolve, reject };
      if (timeoutMs > 0) {
        call.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(callError(operation, GrpcStatus.DEADLINE_EXCEEDED, `no answer from the shim at ${this.path} in ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, call);
      socket.write(Buffer.concat([header, data]));
    });
  }

  /** Close the connection; calls still waiting fail. */
  close(): void {
    this.socket?.destroy();
  }

  /** Calls waiting for their answer (for tests). */
  get waiting(): number {
    return this.pending.size;
  }

  private connection(): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = connect(this.path);
    this.socket = socket;
    // What arrived of a frame not yet whole, for this connection.
    let received: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = received.length ? Buffer.concat([received, chunk]) : chunk;
      received = this.onData(socket, received);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      this.failAll(socket, `the connection to the shim at ${this.path} closed`);
      this.onClose?.();
    });
    return socket;
  }

  /** Fail the calls that went out on `socket`. */
  private failAll(socket: Socket, why: string): void {
    for (const [id, call] of this.pending) {
      if (call.socket !== socket) continue;
      this.pending.delete(id);
      clearTimeout(call.timer);
      call.reject(callError(call.operation, GrpcStatus.UNAVAILABLE, why));
    }
  }

  /** Answer the calls whose whole frames are in `received`; returns what is left of it. */
  private onData(socket: Socket, received: Buffer): Buffer {
    let all = received;
    while (all.length >= headerBytes) {
      const length = all.readUInt32BE(0);
      const id = all.readUInt32BE(4);
      const type = all[8];
      if (length > maxTtrpcDataBytes || type !== typeResponse) {
        this.drop(socket, `the shim at ${this.path} sent ${type === typeResponse ? `a ${length}-byte frame, over ttrpc's ${maxTtrpcDataBytes}` : `a frame of type ${type}`}`);
        return Buffer.alloc(0);
      }
      if (all.length < headerBytes + length) return all;
      const data = all.subarray(headerBytes, headerBytes + length);
      all = all.subarray(headerBytes + length);
      const call = this.pending.get(id);
      // An answer to a call that timed out (or not ours): nobody waits for it.
      if (!call || call.socket !== socket) continue;
      this.pending.delete(id);
      clearTimeout(call.timer);
      let response: Response;
      try {
        response = Response.decode(data);
      } catch (err) {
        call.reject(callError(call.operation, GrpcStatus.INTERNAL, `the shim's response does not decode: ${(err as Error).message}`));
        this.drop(socket, `the shim at ${this.path} sent a response that does not decode`);
        return Buffer.alloc(0);
      }
      const status = response.status;
      if (status && status.code !== GrpcStatus.OK) call.reject(callError(call.operation, status.code, status.message));
      else call.resolve(response.payload);
    }
    return all;
  }

  /** End a connection that broke the protocol: its calls fail, the next call connects again. */
  private drop(socket: Socket, why: string): void {
    if (this.socket === socket) this.socket = undefined;
    this.failAll(socket, why);
    socket.destroy();
  }
}
