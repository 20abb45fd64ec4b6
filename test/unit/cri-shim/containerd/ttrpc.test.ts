import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isNotFound } from '../../../../cri-shim/containerd/client.js';
import { maxTtrpcDataBytes, TtrpcClient } from '../../../../cri-shim/containerd/ttrpc.js';
import { GrpcStatus } from '../../../../lib/errors.js';
import { Request, Response } from '../../../../proto/gen/github.com/containerd/ttrpc/request.js';

// The ttrpc client against a server the test writes: it reads request frames and answers as
// each test says (in order, out of order, with an error, with frames no unary client may get).

interface Received {
  id: number;
  type: number;
  request: Request;
  socket: Socket;
}

function frame(id: number, type: number, data: Uint8Array): Buffer {
  const header = Buffer.alloc(10);
  header.writeUInt32BE(data.length, 0);
  header.writeUInt32BE(id, 4);
  header[8] = type;
  return Buffer.concat([header, data]);
}

function answer(r: Received, payload: Buffer, status?: { code: number; message: string }): void {
  r.socket.write(frame(r.id, 2, Response.encode({ payload, status: status && { ...status, details: [] } }).finish()));
}

describe('ttrpc client', () => {
  let dir: string;
  let path: string;
  let server: Server;
  let received: Received[];
  let connections: number;
  let onRequest: (r: Received) => void;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-'));
    path = join(dir, 'shim.sock');
    received = [];
    connections = 0;
    onRequest = (r) => answer(r, Buffer.from(`echo:${r.request.method}`));
    server = createServer((socket) => {
      connections += 1;
      let buf = Buffer.alloc(0);
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 10 && buf.length >= 10 + buf.readUInt32BE(0)) {
          const length = buf.readUInt32BE(0);
          const r = { id: buf.readUInt32BE(4), type: buf[8]!, request: Request.decode(buf.subarray(10, 10 + length)), socket };
          buf = buf.subarray(10 + length);
          received.push(r);
          onRequest(r);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends a request frame on odd stream IDs with the service, method, payload, timeout and metadata', async () => {
    const client = new TtrpcClient(path, { 'containerd-namespace-ttrpc': 'berth.io' });
    try {
      expect(Buffer.from(await client.call('op', 'containerd.task.v2.Task', 'Start', Buffer.from([1, 2, 3]), 1500)).toString()).toBe('echo:Start');
      expect(Buffer.from(await client.call('op', 'containerd.task.v2.Task', 'Wait', Buffer.alloc(0))).toString()).toBe('echo:Wait');
      expect(received.map((r) => [r.id, r.type])).toEqual([[1, 1], [3, 1]]);
      expect(received[0]!.request).toMatchObject({ service: 'containerd.task.v2.Task', method: 'Start', timeoutNano: 1_500_000_000n, metadata: [{ key: 'containerd-namespace-ttrpc', value: 'berth.io' }] });
      expect([...received[0]!.request.payload]).toEqual([1, 2, 3]);
      expect(received[1]!.request.timeoutNano).toBe(0n);
      expect(connections).toBe(1);
    } finally {
      client.close();
    }
  });

  it('matches answers to calls by stream ID, whatever their order', async () => {
    const held: Received[] = [];
    onRequest = (r) => {
      held.push(r);
      if (held.length === 3) for (const h of held.reverse()) answer(h, Buffer.from(h.request.method));
    };
    const client = new TtrpcClient(path);
    try {
      const answers = await Promise.all(['A', 'B', 'C'].map((m) => client.call('op', 's', m, Buffer.alloc(0))));
      expect(answers.map((a) => Buffer.from(a).toString())).toEqual(['A', 'B', 'C']);
    } finally {
      client.close();
    }
  });

  it('turns an error status into the ContainerdError a relayed call would give', async () => {
    onRequest = (r) => answer(r, Buffer.alloc(0), { code: GrpcStatus.NOT_FOUND, message: 'process exec-1 not found' });
    const client = new TtrpcClient(path);
    try {
      const err = await client.call('shim delete', 's', 'Delete', Buffer.alloc(0)).catch((e: unknown) => e);
      expect(isNotFound(err)).toBe(true);
      expect(String(err)).toContain('containerd shim delete: process exec-1 not found');
    } finally {
      client.close();
    }
  });

  it('a frame over 4 MiB, or of a type no unary client gets, ends the connection and its calls; the next call connects again', async () => {
    let closes = 0;
    const client = new TtrpcClient(path, {}, () => (closes += 1));
    try {
      onRequest = (r) => {
        const header = Buffer.alloc(10);
        header.writeUInt32BE(maxTtrpcDataBytes + 1, 0);
        header.writeUInt32BE(r.id, 4);
        header[8] = 2;
        r.socket.write(header);
      };
      await expect(client.call('op', 's', 'Big', Buffer.alloc(0))).rejects.toMatchObject({ grpcStatus: GrpcStatus.UNAVAILABLE, message: expect.stringMatching(/over ttrpc's 4194304/) });
      onRequest = (r) => r.socket.write(frame(r.id, 3, Buffer.from('data')));
      await expect(client.call('op', 's', 'Data', Buffer.alloc(0))).rejects.toMatchObject({ grpcStatus: GrpcStatus.UNAVAILABLE, message: expect.stringMatching(/a frame of type 3/) });
      onRequest = (r) => answer(r, Buffer.from('fine'));
      expect(Buffer.from(await client.call('op', 's', 'Again', Buffer.alloc(0))).toString()).toBe('fine');
      expect(connections).toBe(3);
      expect(closes).toBe(2);
      expect(client.waiting).toBe(0);
    } finally {
      client.close();
    }
  });

  it('a server that hangs up fails the calls waiting; a timeout fails its call and drops the late answer', async () => {
    const client = new TtrpcClient(path);
    try {
      onRequest = (r) => r.socket.destroy();
      await expect(client.call('op', 's', 'Gone', Buffer.alloc(0))).rejects.toMatchObject({ grpcStatus: GrpcStatus.UNAVAILABLE });
      const late: Received[] = [];
      onRequest = (r) => late.push(r);
      await expect(client.call('op', 's', 'Slow', Buffer.alloc(0), 100)).rejects.toMatchObject({ grpcStatus: GrpcStatus.DEADLINE_EXCEEDED });
      answer(late[0]!, Buffer.from('too late'));
      onRequest = (r) => answer(r, Buffer.from('next'));
      expect(Buffer.from(await client.call('op', 's', 'Next', Buffer.alloc(0))).toString()).toBe('next');
      expect(client.waiting).toBe(0);
    } finally {
      client.close();
    }
  });

  it('a socket nobody listens on fails the call as unavailable', async () => {
    const client = new TtrpcClient(join(dir, 'nobody.sock'));
    await expect(client.call('op', 's', 'M', Buffer.alloc(0))).rejects.toMatchObject({ grpcStatus: GrpcStatus.UNAVAILABLE });
  });
});
