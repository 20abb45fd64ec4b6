// berth-cri as a component: the CRI runtime (runtime.v1 RuntimeService + ImageService) over
// containerd and runc, with its streaming server. All its state lives in containerd (labels) and
// the files under root/state, so a stop and a start (or a kill) lose nothing.
import { mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Component, ComponentContext } from '../lib/component.js';
import { BerthError, errorMessage } from '../lib/errors.js';
import { serveUnix, type UnixServer } from '../lib/grpc/unix-socket.js';
import { ImageServiceService, RuntimeServiceService } from '../proto/gen/runtime/v1/api.js';
import { localPauseImage, unixPath, type CriConfig } from './config.js';
import { ContainerdClient } from './containerd/client.js';
import { serveCriMetrics } from './metrics/endpoint.js';
import { instrumentService } from './metrics/operations.js';
import { CniGarbageCollector } from './pod/cni-gc.js';
import { ImageEventFollower } from './pod/image-events.js';
import { provideLocalPause } from './pod/local-pause.js';
import { recover } from './recover.js';
import { CriRuntime } from './runtime.js';
import { imageService, runtimeService } from './server/service.js';
import { streamHandler } from './stream/handler.js';
import { StreamServer } from './stream/server.js';

export function criComponent(config: CriConfig, { log }: ComponentContext): Component<CriConfig> {
  let client: ContainerdClient | undefined;
  let rt: CriRuntime | undefined;
  let streams: StreamServer | undefined;
  let server: UnixServer | undefined;
  let imageEvents: ImageEventFollower | undefined;
  let cniGc: CniGarbageCollector | undefined;
  let metricsServer: Server | undefined;
  let stopped = false;

  async function start(): Promise<void> {
    const socketPath = unixPath(config.listen, 'listen');
    if (Boolean(config.streamTlsCert) !== Boolean(config.streamTlsKey)) throw new BerthError('invalid-argument', 'streamTlsCert and streamTlsKey go together');
    mkdirSync(config.root, { recursive: true, mode: 0o711 });
    mkdirSync(config.state, { recursive: true, mode: 0o711 });

    client = new ContainerdClient(config.containerd, config.namespace);
    if (log.isLevelEnabled('trace')) client.onCall = (op) => log.trace({ op }, 'containerd call');
    for (let attempt = 1; ; attempt++) {
      try {
        await client.waitReady(5000);
        break;
      } catch (err) {
        if (attempt >= 12 || stopped) throw err;
        log.warn({ containerd: config.containerd, err: errorMessage(err) }, 'waiting for containerd');
      }
    }
    rt = new CriRuntime(config, client, log);
    // Subscribed before the images are loaded, so an image made in between is not missed.
    imageEvents = new ImageEventFollower(rt);
    imageEvents.start();
    const recovered = await recover(rt);
    log.info(recovered, 'state recovered from containerd');
    // berth's own pause image is there before the first pod asks for it (and pinned in ListImages).
    if (config.sandboxImage === localPauseImage) await provideLocalPause(rt);
    // Known pods are loaded: anything else the network holds is a leak to release.
    cniGc = new CniGarbageCollector(rt);
    cniGc.start();
    streams = new StreamServer(
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
    server = await serveUnix(socketPath, [
      [RuntimeServiceService, instrumentService(RuntimeServiceService, runtimeService(rt, log), rt.operations)],
      [ImageServiceService, instrumentService(ImageServiceService, imageService(rt, log), rt.operations)],
    ], { onConnectionError: (err) => log.warn({ err: err.message }, 'dropped a client connection that is not valid HTTP/2') });
    if (config.metricsAddr) {
      const operations = rt.operations;
      metricsServer = await serveCriMetrics(config.metricsAddr, () => operations.text());
      const bound = metricsServer.address();
      log.info({ address: config.metricsAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /metrics and /healthz');
    }
    log.info({ socket: socketPath, containerd: config.containerd, namespace: config.namespace }, 'berth-cri serving');
  }

  async function stop(): Promise<void> {
    stopped = true;
    imageEvents?.stop();
    cniGc?.stop();
    metricsServer?.close();
    await server?.close();
    await streams?.stop();
    await Promise.all(rt?.containers.all().map((c) => c.io?.detach()) ?? []);
    // Rootfs snapshots prepared ahead go; a containerd that does not answer leaves them to the
    // next start's recovery (or their leases' expiry).
    if (rt) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([rt.spareRootfs.close(), new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)))]);
      clearTimeout(timer);
    }
    rt?.shims.close();
    client?.close();
    server = streams = rt = client = imageEvents = cniGc = metricsServer = undefined;
  }

  // berthd's /metrics joins this text to the other components'.
  return { start, stop, metrics: () => rt?.operations.text() ?? '' };
}
