import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { CriWorld } from '../../world/cri.js';
import { podSandboxConfig } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { underAttack } from '../../world/hostile.js';
import { isRoot } from '../../world/netns.js';
import { closeOf, takeServerFrames } from './websocket-wire.js';

// A pod whose ports drop SYNs (a DROP rule in its network namespace, as a firewall or a
// half-dead app does) and a client that port-forwards into it 16 times at once: berth-cri
// must keep answering kubelet (its event loop is not held by the connects), keep its memory,
// and give every forwarded connection its error once portForwardConnectTimeoutMs passes. The
// client is written here, raw bytes on a socket: an HTTP upgrade to WebSocket and the
// v4.channel.k8s.io port-forward framing (data on channel 2i, errors on 2i+1).

const connectTimeoutMs = 3000;

interface WsResult {
  /** The upgrade's status line. */
  status: string;
  /** Channel number -> the messages on it (the first of each channel is its port, uint16 LE). */
  channels: Map<number, Buffer[]>;
  /** Code and reason of the server's Close frame, if one came. */
  close?: { code: number; reason: string };
  /** When the first error text arrived on each error channel, ms after the upgrade. */
  errorAt: Map<number, number>;
}

/** Upgrade `url` to a WebSocket speaking `protocol` and read server frames until a Close or the end. */
function rawWebSocket(url: string, protocol: string): Promise<WsResult> {
  const { hostname, port, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const result: WsResult = { status: '', channels: new Map(), errorAt: new Map() };
    let buf: Buffer = Buffer.alloc(0);
    let upgradedAt = 0;
    const finish = (): void => {
      socket.destroy();
      resolve(result);
    };
    socket.on('error', reject);
    socket.on('close', finish);
    socket.on('connect', () => {
      socket.write(
        [
          `GET ${pathname}${search} HTTP/1.1`,
          `Host: ${hostname}:${port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
          `Sec-WebSocket-Protocol: ${protocol}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!result.status) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        result.status = buf.subarray(0, buf.indexOf('\r\n')).toString();
        buf = buf.subarray(end + 4);
        upgradedAt = performance.now();
        if (!result.status.includes(' 101 ')) return finish();
      }
      const { frames, rest } = takeServerFrames(buf);
      buf = rest;
      for (const { opcode, payload } of frames) {
        if (opcode === 0x8) {
          result.close = closeOf(payload);
          return finish();
        }
        if (opcode !== 0x2 || payload.length === 0) continue;
        const channel = payload[0]!;
        const messages = result.channels.get(channel) ?? [];
        messages.push(Buffer.from(payload.subarray(1)));
        result.channels.set(channel, messages);
        if (channel % 2 === 1 && messages.length === 2) result.errorAt.set(channel, performance.now() - upgradedAt);
      }
    });
  });
}

describe.skipIf(!isRoot)('hostile port-forward clients', () => {
  let world!: CriWorld;
  useCriWorld(['pause'], (w) => (world = w), { flags: ['--port-forward-connect-timeout-ms', String(connectTimeoutMs)] });

  it('16 connects to ports that drop SYNs hold neither the event loop nor memory, and each gets its error', async () => {
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: podSandboxConfig(world, 'blackhole'), runtimeHandler: '' });
    const { info } = await world.runtime.podSandboxStatus({ podSandboxId, verbose: true });
    const netns = (JSON.parse(info.info!) as { netns: string }).netns;
    expect(netns).toMatch(/^\//);
    execFileSync('nsenter', [`--net=${netns}`, 'iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', '8000:8099', '-j', 'DROP']);

    const connections = 4;
    const ports = [8001, 8002, 8003, 8004];
    const urls = await Promise.all(Array.from({ length: connections }, async () => (await world.runtime.portForward({ podSandboxId, port: ports })).url));
    let results: WsResult[] = [];
    const report = await underAttack({ pid: world.cri.child.pid!, probe: () => world.runtime.version({ version: '' }) }, async () => {
      results = await Promise.all(urls.map((url) => rawWebSocket(url, 'v4.channel.k8s.io')));
    });

    expect(report.alive).toBe(true);
    expect(report.failedProbes).toBe(0);
    expect(report.slowestProbeMs).toBeLessThan(500);
    expect(report.rssGrowthMiB).toBeLessThan(64);
    for (const r of results) {
      expect(r.status).toMatch(/^HTTP\/1\.1 101 /);
      ports.forEach((port, i) => {
        const error = Buffer.concat(r.channels.get(2 * i + 1)!.slice(1)).toString();
        expect(error).toMatch(new RegExp(`^error forwarding port ${port} to pod ${podSandboxId}: connect 127\\.0\\.0\\.1:${port}: .*timed out`, 'i'));
        // Given up at the deadline, not before and not much after.
        expect(r.errorAt.get(2 * i + 1)).toBeGreaterThanOrEqual(connectTimeoutMs - 100);
        expect(r.errorAt.get(2 * i + 1)).toBeLessThan(connectTimeoutMs + 2000);
      });
      expect(r.close?.code).toBe(1000);
    }
  }, 60_000);

  it('a request for more ports than maxPortForwardPorts is refused, in the RPC and in the URL', async () => {
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: podSandboxConfig(world, 'many-ports'), runtimeHandler: '' });
    const many = Array.from({ length: 33 }, (_, i) => 8000 + i);
    await expect(world.runtime.portForward({ podSandboxId, port: many })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringMatching(/port: 33 ports, at most 32 per request \(maxPortForwardPorts\)/),
    });
    const { url } = await world.runtime.portForward({ podSandboxId, port: [] });
    const r = await rawWebSocket(`${url}?port=${many.join(',')}`, 'v4.channel.k8s.io');
    expect(r.status).toMatch(/^HTTP\/1\.1 101 /);
    expect(r.close).toEqual({ code: 1008, reason: 'port: 33 ports, at most 32 per request (maxPortForwardPorts)' });
    expect(r.channels.size).toBe(0);
  });
});
