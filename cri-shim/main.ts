// berth-cri: the CRI runtime (runtime.v1 RuntimeService + ImageService) over containerd and runc.
import { mkdirSync, readFileSync } from 'node:fs';
import { runDaemon, type Daemon } from '../lib/daemon.js';
import { BerthError, errorMessage } from '../lib/errors.js';
import { serveUnix } from '../lib/grpc/unix-socket.js';
import { ImageServiceService, RuntimeServiceService } from '../proto/gen/runtime/v1/api.js';
import { unixPath, type CriConfig } from './config.js';
import { parseArgs, usage } from './main-args.js';
import { ContainerdClient } from './containerd/client.js';
import { recover } from './recover.js';
import { CriRuntime } from './runtime.js';
import { imageService, runtimeService } from './server/service.js';
import { streamHandler } from './stream/handler.js';
import { StreamServer } from './stream/server.js';

async function serve(config: CriConfig, daemon: Daemon): Promise<void> {
  const log = daemon.logger(config.logLevel);
  const socketPath = unixPath(config.listen, 'listen');
  mkdirSync(config.root, { recursive: true, mode: 0o711 });
  mkdirSync(config.state, { recursive: true, mode: 0o711 });

  const client = new ContainerdClient(config.containerd, config.namespace);
  for (let attempt = 1; ; attempt++) {
    try {
      await client.waitReady(5000);
      break;
    } catch (err) {
      if (attempt >= 12) throw err;
      log.warn({ containerd: config.containerd, err: errorMessage(err) }, 'waiting for containerd');
    }
  }
  const rt = new CriRuntime(config, client, log);
  const recovered = await recover(rt);
  log.info(recovered, 'state recovered from containerd');
  if (Boolean(config.streamTlsCert) !== Boolean(config.streamTlsKey)) throw new BerthError('invalid-argument', 'streamTlsCert and streamTlsKey go together');
  const streams = new StreamServer(
    {
      address: config.streamAddress,
      port: config.streamPort,
      tls: config.streamTlsCert && config.streamTlsKey ? { cert: readFileSync(config.streamTlsCert, 'utf8'), key: readFileSync(config.streamTlsKey, 'utf8') } : undefined,
      log,
    },
    streamHandler(rt),
  );
  const streamUrl = await streams.start();
  rt.streamServer = streams;
  log.info({ url: streamUrl }, 'streaming server listening');
  const server = await serveUnix(socketPath, [
    [RuntimeServiceService, runtimeService(rt, log)],
    [ImageServiceService, imageService(rt, log)],
  ], { onConnectionError: (err) => log.warn({ err: err.message }, 'dropped a client connection that is not valid HTTP/2') });
  log.info({ socket: socketPath, containerd: config.containerd, namespace: config.namespace }, 'berth-cri serving');

  daemon.onStop(async () => {
    await server.close();
    await streams.stop();
    await Promise.all(rt.containers.all().map((c) => c.io?.detach()));
    client.close();
  });
  daemon.ready();
}

runDaemon({ name: 'berth-cri', usage, parseArgs, serve });
