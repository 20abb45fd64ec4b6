import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { callUnary, grpcStatus, serveUnix, unary, unixClient, type UnixServer } from '../../../../lib/grpc/unix-socket.js';
import { RuntimeServiceClient, RuntimeServiceService, type VersionRequest, type VersionResponse } from '../../../../proto/gen/runtime/v1/api.js';

// The generated CRI service served over a unix socket by lib/grpc and called by the generated
// client, as kubelet would: responses, unimplemented RPCs and errors with their status codes.

describe('gRPC over unix sockets', () => {
  let dir = '';
  let served: UnixServer | undefined;
  let client: InstanceType<typeof RuntimeServiceClient> | undefined;

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-grpc-')); });
  afterEach(async () => {
    client?.close();
    await served?.close();
    served = undefined;
    client = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(version: (req: VersionRequest) => Promise<VersionResponse>) {
    const socket = join(dir, 'run/cri.sock');
    served = await serveUnix(socket, [[RuntimeServiceService, { version: unary('Version', version) }]]);
    client = unixClient(RuntimeServiceClient, socket);
    return socket;
  }

  it('answers a CRI Version call from the generated client', async () => {
    const socket = await start(async (req) => ({ version: req.version, runtimeName: 'berth', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' }));
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    const res = await callUnary(client!.version.bind(client), { version: '0.1.0' });
    expect(res).toEqual({ version: '0.1.0', runtimeName: 'berth', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' });
  });

  it('answers a client that sends the socket path as :authority, as Go clients of the kubelet 1.2x era do', async () => {
    const socket = await start(async (req) => ({ version: req.version, runtimeName: 'berth', runtimeVersion: '', runtimeApiVersion: 'v1' }));
    const goLike = new RuntimeServiceClient(`unix://${socket}`, credentials.createInsecure(), { 'grpc.default_authority': socket });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await callUnary<VersionRequest, VersionResponse>(goLike.version.bind(goLike), { version: `v${i}` });
        expect(res.version).toBe(`v${i}`);
      }
    } finally {
      goLike.close();
    }
  });

  it('leaves no descriptor behind when clients go, politely, abruptly or after sending garbage', async () => {
    // Each connection is the client's socket plus a socketpair in front of nghttp2: all three
    // must close with it, whichever side ends it.
    const openFds = () => readdirSync('/proc/self/fd').length;
    const socket = await start(async (req) => ({ version: req.version, runtimeName: 'berth', runtimeVersion: '', runtimeApiVersion: 'v1' }));
    await callUnary(client!.version.bind(client), { version: 'warm' });
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const c = unixClient(RuntimeServiceClient, socket);
      await callUnary(c.version.bind(c), { version: `v${i}` });
      c.close();
    }
    const raw = (bytes: string) =>
      new Promise<void>((resolve) => {
        const s = connect(socket, () => s.write(bytes, () => setTimeout(() => s.destroy(), 20)));
        s.on('error', () => undefined);
        s.on('close', () => resolve());
      });
    for (let i = 0; i < 20; i++) await raw('GET / HTTP/1.1\r\n\r\n');
    for (let i = 0; i < 20; i++) await raw('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (openFds() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(openFds()).toBeLessThanOrEqual(before);
    // And the server still answers.
    expect((await callUnary<VersionRequest, VersionResponse>(client!.version.bind(client), { version: 'after' })).version).toBe('after');
  });

  it('an RPC without a handler is UNIMPLEMENTED', async () => {
    await start(async () => ({ version: '', runtimeName: '', runtimeVersion: '', runtimeApiVersion: '' }));
    await expect(callUnary(client!.status.bind(client), { verbose: false })).rejects.toMatchObject({ code: grpcStatus.UNIMPLEMENTED });
  });

  it('a BerthError becomes its status code with the message naming the field', async () => {
    await start(async () => { throw new BerthError('invalid-argument', 'version: must not be empty'); });
    await expect(callUnary(client!.version.bind(client), { version: '' })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: 'version: must not be empty',
    });
  });

  it('replaces a stale socket but refuses to remove a file that is not a socket', async () => {
    const first = await start(async (req) => ({ version: req.version, runtimeName: 'a', runtimeVersion: '', runtimeApiVersion: '' }));
    client?.close();
    served!.server.forceShutdown();
    served = await serveUnix(first, [[RuntimeServiceService, {}]]);
    await served.close();
    served = undefined;
    const plain = join(dir, 'not-a-socket');
    writeFileSync(plain, 'x');
    await expect(serveUnix(plain, [])).rejects.toThrow(/not a socket/);
  });
});
