import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../../lib/errors.js';
import { SpdySession, type SpdySessionOptions } from '../../lib/stream/spdy.js';
import { acceptWebSocket, isWebSocketRequest, type AcceptOptions } from '../../lib/stream/websocket-handshake.js';
import { CloseCode } from '../../lib/stream/websocket.js';
import { webSocketDuplex } from '../../lib/stream/channels.js';
import type { CriRuntime } from '../runtime.js';
import { runAttach } from './attach.js';
import { prepareExec, type PreparedExec } from './exec.js';
import { portForwardSpdyVersions, portForwardTunnel, portForwardWsVersions, remoteCommandSpdyVersions, remoteCommandWsVersions } from '../../lib/stream/protocols.js';
import { portForwardLimits, servePortForward, serveWsPortForward, webSocketPorts, type PortForwardTarget } from './portforward.js';
import { serveRemoteCommand, spdyRemoteCommandChannels, wsRemoteCommandChannels, type RemoteCommandChannels, type RemoteCommandOptions } from './remotecommand.js';
import { refuseUpgrade, type StreamRequest } from './server.js';
import { acceptSpdy, isSpdyUpgrade } from './spdy-upgrade.js';

// What the streaming server does with an upgraded request: exec and attach speak remotecommand,
// port-forward its own protocol, each over SPDY/3.1 or over WebSocket.

export function streamHandler(rt: CriRuntime) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer, stream: StreamRequest): void => {
    if (isWebSocketRequest(req)) {
      serveWebSocket(rt, req, socket, head, stream);
      return;
    }
    if (!isSpdyUpgrade(req)) {
      refuseUpgrade(socket, '400 Bad Request', 'this streaming server speaks SPDY/3.1 (Upgrade: SPDY/3.1) and WebSocket (Upgrade: websocket)');
      return;
    }
    if (stream.kind === 'portforward') {
      const target = portForwardTarget(rt, stream.request.podSandboxId);
      const accepted = acceptSpdy(req, socket, head, portForwardSpdyVersions, spdyOptions(rt));
      if (!accepted) return;
      if (!target) {
        accepted.session.close(true);
        return;
      }
      accepted.session.on('error', (err: Error) => rt.log.debug({ pod: target.podId, err: err.message }, 'port-forward session'));
      servePortForward(accepted.session, target, portForwardLimits(rt.config), rt.log);
      return;
    }
    const accepted = acceptSpdy(req, socket, head, remoteCommandSpdyVersions, spdyOptions(rt));
    if (!accepted) return;
    const { session, protocol } = accepted;
    session.on('error', (err: Error) => rt.log.debug({ err: err.message }, 'remotecommand session'));
    serveCommand(rt, stream, (options) => spdyRemoteCommandChannels(session, protocol, options));
  };
}

/** berth-cri's streaming limits (README: Streaming limits), for a SPDY session (one tunnelled in a WebSocket has no socket to time: the WebSocket's idle timeout covers it)... */
function spdyOptions(rt: CriRuntime): Omit<SpdySessionOptions, 'role'> {
  return { limits: { maxConcurrentStreams: rt.config.streamMaxConcurrentStreams }, idleTimeoutMs: rt.config.streamIdleTimeout };
}

/** ...and for a WebSocket. */
function wsOptions(rt: CriRuntime): AcceptOptions {
  return { maxMessageBytes: rt.config.streamMaxMessageSize, idleTimeoutMs: rt.config.streamIdleTimeout };
}

function portForwardTarget(rt: CriRuntime, podId: string): PortForwardTarget | undefined {
  const s = rt.sandboxes.find(podId);
  return s ? { netnsPath: s.netnsPath || undefined, podId: s.id } : undefined;
}

/** The WebSocket variants: remotecommand channels (v1-v5), port-forward channels, or SPDY tunnelled for port-forward. */
function serveWebSocket(rt: CriRuntime, req: IncomingMessage, socket: Duplex, head: Buffer, stream: StreamRequest): void {
  if (stream.kind === 'portforward') {
    const target = portForwardTarget(rt, stream.request.podSandboxId);
    if (!target) return refuseUpgrade(socket, '404 Not Found', `pod sandbox ${stream.request.podSandboxId} not found`);
    const limits = portForwardLimits(rt.config);
    const ws = acceptWebSocket(req, socket, head, portForwardWsVersions, wsOptions(rt));
    if (!ws) return;
    ws.on('error', (err) => rt.log.debug({ pod: target.podId, err: err.message }, 'port-forward websocket'));
    if (ws.protocol === portForwardTunnel) {
      const session = new SpdySession(webSocketDuplex(ws), { ...spdyOptions(rt), role: 'server' });
      session.on('error', (err: Error) => rt.log.debug({ pod: target.podId, err: err.message }, 'port-forward session (tunnelled)'));
      servePortForward(session, target, limits, rt.log);
      return;
    }
    // Ports come with the PortForward request; kubelet's own clients may name them in the URL.
    let ports: number[];
    try {
      ports = webSocketPorts(stream.request.port, req.url ?? '/', limits);
    } catch (err) {
      ws.close(CloseCode.PolicyViolation, errorMessage(err));
      return;
    }
    serveWsPortForward(ws, ws.protocol, ports, target, limits, rt.log);
    return;
  }
  const ws = acceptWebSocket(req, socket, head, remoteCommandWsVersions, wsOptions(rt));
  if (!ws) return;
  ws.on('error', (err) => rt.log.debug({ err: err.message }, 'remotecommand websocket'));
  serveCommand(rt, stream, async (options) => wsRemoteCommandChannels(ws, ws.protocol, options));
}

/** Exec or attach over the channels `open` sets up for the request's stdio. */
function serveCommand(rt: CriRuntime, stream: StreamRequest, open: (options: RemoteCommandOptions) => Promise<RemoteCommandChannels>): void {
  if (stream.kind === 'portforward') return;
  const r = stream.request;
  const options = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
  const opening = open(options);
  // An exec's process was begun with its URL (container-exec.ts), or is made now, while the
  // client is still opening its streams.
  const cmd = stream.kind === 'exec' ? stream.request.cmd : undefined;
  let prepared: Promise<PreparedExec> | undefined;
  if (stream.kind === 'exec') prepared = stream.prepared;
  if (cmd && !prepared) {
    prepared = Promise.resolve().then(() => prepareExec(rt, rt.container(r.containerId), cmd, options));
    prepared.catch(() => undefined);
  }
  void serveRemoteCommand(
    opening,
    options,
    async (streams) => {
      if (prepared) {
        const exitCode = await (await prepared).start(streams);
        return { exitCode, command: cmd };
      }
      await runAttach(rt, rt.container(r.containerId), streams);
      return { exitCode: 0 };
    },
    () => void prepared?.then((p) => p.abandon(), () => undefined),
    rt.log,
  ).catch((err: unknown) => rt.log.warn({ err: errorMessage(err) }, 'streaming request failed'));
}
