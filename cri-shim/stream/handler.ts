import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../../lib/errors.js';
import type { CriRuntime } from '../runtime.js';
import { runAttach } from './attach.js';
import { runExec } from './exec.js';
import { servePortForward } from './portforward.js';
import { serveRemoteCommand } from './remotecommand.js';
import type { StreamRequest } from './server.js';
import { acceptSpdy, isSpdyUpgrade, portForwardProtocols, remoteCommandProtocols } from './spdy-upgrade.js';

// What the streaming server does with an upgraded request: exec and attach speak remotecommand,
// port-forward its own protocol, each over SPDY/3.1.

export function streamHandler(rt: CriRuntime) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer, stream: StreamRequest): void => {
    if (!isSpdyUpgrade(req)) {
      const body = 'this streaming server speaks SPDY/3.1 (Upgrade: SPDY/3.1)\n';
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    if (stream.kind === 'portforward') {
      const accepted = acceptSpdy(req, socket, head, portForwardProtocols);
      if (!accepted) return;
      const s = rt.sandboxes.find(stream.request.podSandboxId);
      if (!s) {
        accepted.session.close(true);
        return;
      }
      accepted.session.on('error', (err: Error) => rt.log.debug({ pod: s.id, err: err.message }, 'port-forward session'));
      servePortForward(accepted.session, { netnsPath: s.netnsPath || undefined, podId: s.id }, rt.log);
      return;
    }
    const accepted = acceptSpdy(req, socket, head, remoteCommandProtocols);
    if (!accepted) return;
    const { session, protocol } = accepted;
    session.on('error', (err: Error) => rt.log.debug({ err: err.message }, 'remotecommand session'));
    const r = stream.request;
    const options = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
    void serveRemoteCommand(
      session,
      protocol,
      options,
      async (streams) => {
        const c = rt.container(r.containerId);
        if (stream.kind === 'exec') {
          const exitCode = await runExec(rt, c, stream.request.cmd, streams);
          return { exitCode, command: stream.request.cmd };
        }
        await runAttach(rt, c, streams);
        return { exitCode: 0 };
      },
      rt.log,
    ).catch((err: unknown) => rt.log.warn({ err: errorMessage(err) }, 'streaming request failed'));
  };
}
