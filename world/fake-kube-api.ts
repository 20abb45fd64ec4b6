import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { writeFileSync } from 'node:fs';

// A stand-in for the Kubernetes API server, for the kube lease store's tests: no real API server
// can run on these machines. It serves only the Node endpoints the store uses, over plain HTTP
// on 127.0.0.1: list, get, merge patch, and watch (newline-delimited JSON events) with one
// global resourceVersion counter and an event history, so a watch can resume from any version
// still in the history and gets 410 Gone (an ERROR event, as real servers send) for older ones.
// Not importing vitest.

export interface FakeNode {
  apiVersion: 'v1';
  kind: 'Node';
  metadata: { name: string; resourceVersion: string; uid: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { podCIDR?: string; podCIDRs?: string[] };
  status: Record<string, unknown>;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: FakeNode;
}

export interface SeenRequest {
  method: string;
  path: string;
  contentType?: string;
}

const clone = <T>(v: T): T => structuredClone(v);

/** RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export class FakeKubeApi {
  private server?: Server;
  private readonly nodes = new Map<string, FakeNode>();
  private version = 100;
  /** Events newer than `compactedAt`, oldest first: what a watch can replay. */
  private history: { version: number; event: WatchEvent }[] = [];
  private compactedAt = 0;
  private readonly watchers = new Set<{ res: ServerResponse; from: number }>();
  private readonly sockets = new Set<Socket>();
  private nextUid = 1;
  /** Answer a too-old watch with HTTP 410 instead of a 200 carrying an ERROR event (both happen). */
  goneAsHttpStatus = false;
  /** Every request served, in order. */
  readonly requests: SeenRequest[] = [];
  url = '';

  /** Listen on `host` (default 127.0.0.1; e.g. an underlay bridge address for network namespaces). */
  async start(host = '127.0.0.1'): Promise<this> {
    const server = createServer((req, res) => this.serve(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    this.server = server;
    this.url = `http://${host}:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.closeWatches();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A kubeconfig pointing at this server (plain http, so TLS verification is switched off). */
  writeKubeconfig(path: string): string {
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${this.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: fake',
      '  user:',
      '    token: fake-token',
      'contexts:',
      '- name: fake',
      '  context:',
      '    cluster: fake',
      '    user: fake',
      'current-context: fake',
      '',
    ].join('\n');
    writeFileSync(path, text);
    return path;
  }

  // ---- test helpers ---------------------------------------------------------------------------

  get resourceVersion(): number {
    return this.version;
  }

  addNode(name: string, podCIDRs: string[] = []): FakeNode {
    if (this.nodes.has(name)) throw new Error(`fake kube API: node ${name} exists`);
    const node: FakeNode = { apiVersion: 'v1', kind: 'Node', metadata: { name, resourceVersion: '', uid: `uid-${this.nextUid++}` }, spec: {}, status: {} };
    if (podCIDRs.length) node.spec = { podCIDR: podCIDRs[0], podCIDRs: [...podCIDRs] };
    return this.record('ADDED', node);
  }

  setPodCIDR(name: string, podCIDRs: string[]): FakeNode {
    const node = this.mustGet(name);
    node.spec = podCIDRs.length ? { podCIDR: podCIDRs[0], podCIDRs: [...podCIDRs] } : {};
    return this.record('MODIFIED', node);
  }

  /** Merge `changes` into the node's annotations (null deletes), as another client's patch would. */
  setAnnotations(name: string, changes: Record<string, string | null>): FakeNode {
    const node = this.mustGet(name);
    node.metadata = mergePatch(node.metadata, { annotations: changes }) as FakeNode['metadata'];
    return this.record('MODIFIED', node);
  }

  /** A change that is not about leases, like the kubelet's status updates. */
  touchNode(name: string): FakeNode {
    const node = this.mustGet(name);
    node.status = { ...node.status, heartbeat: this.version + 1 };
    return this.record('MODIFIED', node);
  }

  deleteNode(name: string): void {
    const node = this.mustGet(name);
    this.nodes.delete(name);
    this.record('DELETED', node);
  }

  node(name: string): FakeNode | undefined {
    const node = this.nodes.get(name);
    return node && clone(node);
  }

  /** End every open watch, as an API server does every few minutes. */
  closeWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Forget the event history: a watch from any version up to now then gets 410 Gone. */
  compact(): void {
    this.compactedAt = this.version;
    this.history = [];
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- state -------------------------------------------------------------------------------------

  private mustGet(name: string): FakeNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`fake kube API: no node ${name}`);
    return node;
  }

  private record(type: WatchEvent['type'], node: FakeNode): FakeNode {
    this.version += 1;
    node.metadata.resourceVersion = String(this.version);
    if (type !== 'DELETED') this.nodes.set(node.metadata.name, node);
    const event: WatchEvent = { type, object: clone(node) };
    this.history.push({ version: this.version, event });
    for (const w of this.watchers) w.res.write(`${JSON.stringify(event)}\n`);
    return clone(node);
  }

  // ---- HTTP --------------------------------------------------------------------------------------

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.requests.push({ method: req.method ?? '', path: url.pathname + url.search, contentType: req.headers['content-type'] });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        this.route(req.method ?? '', url, Buffer.concat(chunks).toString('utf8'), req.headers['content-type'] ?? '', res);
      } catch (err) {
        this.send(res, 500, status(500, 'InternalError', String(err)));
      }
    });
  }

  private send(res: ServerResponse, code: number, body: object): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private route(method: string, url: URL, body: string, contentType: string, res: ServerResponse): void {
    const one = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname);
    if (url.pathname === '/api/v1/nodes' && method === 'GET') {
      if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') return this.watch(url, res);
      const items = [...this.nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      return this.send(res, 200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.version) }, items });
    }
    if (!one) return this.send(res, 404, status(404, 'NotFound', `the server could not find the requested resource ${url.pathname}`));
    const name = decodeURIComponent(one[1] as string);
    const node = this.nodes.get(name);
    if (!node) return this.send(res, 404, status(404, 'NotFound', `nodes "${name}" not found`));
    if (method === 'GET') return this.send(res, 200, node);
    if (method !== 'PATCH') return this.send(res, 405, status(405, 'MethodNotAllowed', `${method} is not supported`));
    const type = contentType.split(';')[0]?.trim();
    if (type !== 'application/merge-patch+json' && type !== 'application/strategic-merge-patch+json') {
      return this.send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType})`));
    }
    let patch: { metadata?: { annotations?: Record<string, string | null>; labels?: Record<string, string | null> } };
    try {
      patch = JSON.parse(body) as typeof patch;
    } catch {
      return this.send(res, 400, status(400, 'BadRequest', 'the patch is not JSON'));
    }
    const before = JSON.stringify(node.metadata);
    const metadata = mergePatch(node.metadata, { annotations: patch.metadata?.annotations, labels: patch.metadata?.labels }) as FakeNode['metadata'];
    for (const k of ['annotations', 'labels'] as const) if (metadata[k] && Object.keys(metadata[k]).length === 0) delete metadata[k];
    // a patch that changes nothing does not bump the resourceVersion, as on a real server
    if (JSON.stringify(metadata) === before) return this.send(res, 200, node);
    node.metadata = metadata;
    return this.send(res, 200, this.record('MODIFIED', node));
  }

  private watch(url: URL, res: ServerResponse): void {
    const text = url.searchParams.get('resourceVersion');
    const from = text ? Number(text) : 0;
    const gone = from > 0 && (!Number.isInteger(from) || from < this.compactedAt);
    const expired = status(410, 'Expired', `too old resource version: ${text} (${this.compactedAt + 1})`);
    if (gone && this.goneAsHttpStatus) return this.send(res, 410, expired);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const write = (e: object) => res.write(`${JSON.stringify(e)}\n`);
    if (gone) {
      write({ type: 'ERROR', object: expired });
      res.end();
      return;
    }
    if (from === 0) {
      // no version: the current state as ADDED events, then the changes
      for (const node of this.nodes.values()) write({ type: 'ADDED', object: node });
    } else {
      for (const h of this.history) if (h.version > from) write(h.event);
    }
    const watcher = { res, from: this.version };
    this.watchers.add(watcher);
    res.on('close', () => this.watchers.delete(watcher));
  }
}
