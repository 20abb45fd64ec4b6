import { createServer, type RequestListener, type Server } from 'node:http';

// The small HTTP endpoint each daemon serves beside its real work (/metrics, /healthz, /readyz),
// on a HOST:PORT setting ("127.0.0.1:9403", "[::1]:9403"; port 0 picks a free one).

/** Listen on `address` with `handler`; resolves with the server once it listens. */
export function listenHttp(address: string, handler: RequestListener): Promise<Server> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  const server = createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
