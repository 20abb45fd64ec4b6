import { createWriteStream, renameSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { repositoryScope, type Credentials } from './auth.js';
import { endpointsFor, type Capability, type RegistryEndpoint } from './hosts.js';
import { checkDescriptor, checkWithinLimit, defaultPullLimits, manifestLimit, overLimit, parseManifestDocument, type PullLimits } from './manifest.js';
import { selectPlatform, type Descriptor, type Platform } from './platform.js';
import { parseReference, type ImageReference } from './reference.js';
import { errorDetail, readBody, RegistryHttpError, RegistryTransport } from './transport.js';
import { checkDigest, digestLike, isDigest, sha256Digest, verifyingStream } from './verify.js';

// A registry (distribution v2) client: manifests and blobs through the endpoints hosts.toml
// names (mirrors first, each only for what its capabilities allow), with every byte checked
// against the digest asked for, and never more read than the descriptor's size or the limit
// for a manifest allows; plus the push calls the test world loads images with.

export type { Descriptor, Platform } from './platform.js';
/** Kept for callers written against the first version of this module. */
export type BlobDescriptor = Descriptor;

export const manifestMediaTypes = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const;
const acceptManifests = manifestMediaTypes.join(', ');
// A tag as the distribution spec allows it in a URL; anything else is not sent.
const tagPattern = /^[\w][\w.-]{0,127}$/;

export interface RegistryClientOptions {
  /** containerd-style hosts directory (`/etc/containerd/certs.d`). */
  hostsDir?: string;
  auth?: Credentials;
  timeoutMs?: number;
  limits?: PullLimits;
}

export interface ResolvedManifest {
  name: string;
  digest: string;
  mediaType: string;
  size: number;
  endpoint: RegistryEndpoint;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** An image reference, or a repository name (`host/path`) as a string. */
export type RepositoryRef = ImageReference | string;

function repository(ref: RepositoryRef): ImageReference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

function headerValue(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return typeof v === 'string' ? v : undefined;
}

function mediaTypeOf(res: IncomingMessage, bytes?: Buffer): string {
  const header = (headerValue(res, 'content-type') ?? '').split(';')[0]!.trim();
  if (!bytes) return header;
  let doc: { mediaType?: unknown; manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch {
    throw new BerthError('invalid-argument', 'manifest is not JSON');
  }
  if (typeof doc.mediaType === 'string' && doc.mediaType) return doc.mediaType;
  if ((manifestMediaTypes as readonly string[]).includes(header)) return header;
  // Neither says: an OCI document with `manifests` is an index.
  return Array.isArray(doc.manifests) ? manifestMediaTypes[0] : manifestMediaTypes[1];
}

export class RegistryClient {
  private readonly transport: RegistryTransport;
  private readonly hostConfig = new Map<string, RegistryEndpoint[]>();
  readonly limits: PullLimits;

  constructor(private readonly options: RegistryClientOptions = {}) {
    this.transport = new RegistryTransport(options.auth, options.timeoutMs ?? 30_000);
    this.limits = options.limits ?? defaultPullLimits;
  }

  private endpoints(ref: ImageReference, capability: Capability): RegistryEndpoint[] {
    // hosts.toml is read once per client, which lives for one pull: edits apply to the next pull.
    let configured = this.hostConfig.get(ref.domain);
    if (!configured) {
      configured = endpointsFor(this.options.hostsDir, ref.domain);
      this.hostConfig.set(ref.domain, configured);
    }
    const all = configured.filter((e) => e.capabilities.includes(capability));
    if (all.length === 0) throw new BerthError('invalid-config', `no endpoint configured for ${ref.domain} has the "${capability}" capability`);
    return all;
  }

  /**
   * Try each endpoint with `capability` in order until one answers 2xx. Connection errors, 5xx
   * and a mirror's 404 move on to the next; the registry's own 404 is final.
   */
  private async send(ref: ImageReference, capability: Capability, method: 'GET' | 'HEAD', suffix: string, accept?: string): Promise<{ res: IncomingMessage; endpoint: RegistryEndpoint }> {
    const failures: string[] = [];
    let notFound = false;
    for (const endpoint of this.endpoints(ref, capability)) {
      try {
        const res = await this.transport.request(endpoint, {
          method,
          path: `${ref.path}/${suffix}`,
          scope: repositoryScope(ref.path),
          domain: ref.domain,
          ...(accept ? { headers: { accept } } : {}),
        });
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return { res, endpoint };
        let detail = '';
        if (method === 'HEAD') res.resume();
        else detail = await errorDetail(res);
        failures.push(`${endpoint.host}: HTTP ${status}${detail ? ` ${detail}` : ''}`);
        if (status === 404) {
          notFound = true;
          if (!endpoint.mirror) break;
        } else if (status < 500 && status !== 429 && !endpoint.mirror) break;
      } catch (err) {
        if (err instanceof RegistryHttpError && !endpoint.mirror) throw new BerthError('failed-precondition', err.message, { cause: err });
        if (err instanceof BerthError && err.kind === 'invalid-config') throw err;
        if (err instanceof BerthError && err.kind === 'failed-precondition' && !endpoint.mirror) throw err;
        failures.push(`${endpoint.host}: ${errorMessage(err)}`);
      }
    }
    const what = `${ref.name}: ${suffix}`;
    if (notFound) throw new BerthError('not-found', `${what} not found (${failures.join('; ')})`);
    throw new BerthError('not-available', `cannot fetch ${what} (${failures.join('; ')})`);
  }

  /** The manifest or index a reference names: by tag through `resolve` endpoints, HEAD first. */
  async resolve(refOrString: RepositoryRef): Promise<ResolvedManifest> {
    const ref = repository(refOrString);
    const target = ref.digest ?? ref.tag ?? 'latest';
    const capability: Capability = ref.digest ? 'pull' : 'resolve';
    try {
      const { res, endpoint } = await this.send(ref, capability, 'HEAD', `manifests/${target}`, acceptManifests);
      res.resume();
      const digest = headerValue(res, 'docker-content-digest');
      const mediaType = mediaTypeOf(res);
      const size = Number(headerValue(res, 'content-length'));
      if (digest && isDigest(digest) && (!ref.digest || digest === ref.digest) && (manifestMediaTypes as readonly string[]).includes(mediaType) && Number.isSafeInteger(size) && size > 0) {
        // As containerd's resolver: a manifest over the limit is refused, not fetched.
        checkWithinLimit(size, manifestLimit(this.limits), `manifest ${target} of ${ref.name} from ${endpoint.host}`);
        return { name: ref.name, digest, mediaType, size, endpoint };
      }
    } catch (err) {
      // Some registries and proxies do not answer HEAD on manifests; a GET tells what it can.
      if (!(err instanceof BerthError) || err.kind !== 'not-available') throw err;
    }
    const got = await this.getManifest(ref, target, capability);
    return { name: ref.name, digest: got.digest, mediaType: got.mediaType, size: got.bytes.length, endpoint: got.endpoint };
  }

  /**
   * A manifest by tag or digest (the reference's own when not given), digest verified; by
   * descriptor (an index entry), also exactly its size.
   */
  async fetchManifest(refOrString: RepositoryRef, target?: string | Descriptor): Promise<FetchedManifest> {
    const ref = repository(refOrString);
    const expected = typeof target === 'object' ? checkDescriptor(target, `manifest of ${ref.name}`, 'descriptor', manifestLimit(this.limits)) : undefined;
    const tagOrDigest = expected?.digest ?? (target as string | undefined) ?? ref.digest ?? ref.tag ?? 'latest';
    const { bytes, mediaType, digest } = await this.getManifest(ref, tagOrDigest, isDigest(tagOrDigest) ? 'pull' : 'resolve', expected?.size);
    return { bytes, mediaType, digest };
  }

  private async getManifest(ref: ImageReference, target: string, capability: Capability, size?: number): Promise<FetchedManifest & { endpoint: RegistryEndpoint }> {
    const byDigest = isDigest(target);
    // The target becomes part of the URL: a tag or a digest, never a path.
    if (!byDigest && !tagPattern.test(target)) throw new BerthError('invalid-argument', `manifest of ${ref.name}: "${target}" is neither a tag nor a digest`);
    const { res, endpoint } = await this.send(ref, capability, 'GET', `manifests/${target}`, acceptManifests);
    const what = `manifest ${target} of ${ref.name} from ${endpoint.host}`;
    const length = Number(headerValue(res, 'content-length') ?? NaN);
    try {
      if (size !== undefined && Number.isFinite(length) && length !== size) throw new BerthError('io', `${what}: ${length} bytes offered, descriptor says ${size}`);
      if (Number.isFinite(length)) checkWithinLimit(length, manifestLimit(this.limits), what);
    } catch (err) {
      res.destroy();
      throw err;
    }
    // Read no further than the descriptor's size (or the limit) plus the one byte that proves it wrong.
    const bytes = await readBody(res, size ?? this.limits.maxManifestBytes, what, size !== undefined ? `more than the ${size} bytes its descriptor says` : `body ${overLimit(manifestLimit(this.limits))}`);
    if (size !== undefined && bytes.length !== size) throw new BerthError('io', `${what}: got ${bytes.length} bytes, descriptor says ${size}`);
    const header = headerValue(res, 'docker-content-digest');
    // Verify against the digest asked for, else against the one the registry claims.
    const expected = byDigest ? target : header && isDigest(header) ? header : undefined;
    const digest = expected ? digestLike(expected, bytes) : sha256Digest(bytes);
    if (expected && digest !== expected) throw new BerthError('io', `${what} from ${endpoint.host}: content has digest ${digest}, expected ${expected}`);
    let mediaType: string;
    try {
      mediaType = mediaTypeOf(res, bytes);
    } catch (err) {
      throw new BerthError('invalid-argument', `${what} from ${endpoint.host}: ${errorMessage(err)}`);
    }
    return { bytes, mediaType, digest, endpoint };
  }

  /** The manifest for a platform from an index / manifest list. */
  selectPlatform(index: { manifests?: Descriptor[] }, platform: Platform): Descriptor {
    return selectPlatform(index, platform);
  }

  /** Resolve a reference all the way to one image manifest for `platform`. */
  async fetchImageManifest(refOrString: RepositoryRef, platform: Platform): Promise<{ index?: FetchedManifest; manifest: FetchedManifest }> {
    const ref = repository(refOrString);
    const top = await this.fetchManifest(ref);
    const doc = parseManifestDocument(top.bytes, top.mediaType, `manifest ${top.digest} of ${ref.name}`, this.limits);
    if (doc.kind !== 'index') return { manifest: top };
    return { index: top, manifest: await this.fetchManifest(ref, selectPlatform(doc, platform)) };
  }

  /**
   * A blob as a stream that errors unless size and digest match: at once when more bytes come
   * than the descriptor says (the connection is dropped there), at its end otherwise.
   */
  async fetchBlob(refOrString: RepositoryRef, descriptor: Descriptor): Promise<Readable> {
    const ref = repository(refOrString);
    const desc = checkDescriptor(descriptor, `blob of ${ref.name}`, 'descriptor');
    const { res, endpoint } = await this.send(ref, 'pull', 'GET', `blobs/${desc.digest}`);
    const what = `blob ${desc.digest} of ${ref.name} from ${endpoint.host}`;
    const length = headerValue(res, 'content-length');
    if (length !== undefined && Number(length) !== desc.size) {
      res.destroy();
      throw new BerthError('io', `${what}: ${length} bytes offered, descriptor says ${desc.size}`);
    }
    const verify = verifyingStream(desc.digest, desc.size, what);
    // Registered before pipeline's own listener, so the consumer sees this message, not "aborted".
    res.once('error', (err) => verify.destroy(new BerthError('io', `${what}: connection broke off mid-blob (${err.message})`, { cause: err })));
    // pipeline tears down both sides: a consumer that stops early also frees the connection.
    return pipeline(res, verify, () => undefined);
  }

  async fetchBlobBuffer(refOrString: RepositoryRef, desc: Descriptor): Promise<Buffer> {
    const stream = await this.fetchBlob(refOrString, desc);
    const parts: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
    return Buffer.concat(parts);
  }

  /** Stream a verified blob into `file` (written beside it first, renamed only once verified). */
  async fetchBlobToFile(refOrString: RepositoryRef, desc: Descriptor, file: string): Promise<void> {
    const stream = await this.fetchBlob(refOrString, desc);
    const temp = `${file}.partial-${process.pid}`;
    try {
      await pipelineAsync(stream, createWriteStream(temp, { mode: 0o644 }));
      renameSync(temp, file);
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
  }

  /** Upload a blob unless the registry has it; true when it was uploaded. */
  async pushBlob(refOrString: RepositoryRef, digest: string, data: Buffer): Promise<boolean> {
    const ref = repository(refOrString);
    checkDigest(digest, `blob for ${ref.name}`);
    if (digestLike(digest, data) !== digest) throw new BerthError('invalid-argument', `blob for ${ref.name}: data does not have digest ${digest}`);
    return this.withPushEndpoint(ref, async (e) => {
      const scope = repositoryScope(ref.path, true);
      const domain = ref.domain;
      const head = await this.transport.request(e, { method: 'HEAD', path: `${ref.path}/blobs/${digest}`, scope, domain });
      head.resume();
      if (head.statusCode === 200) return false;
      const start = await this.transport.request(e, { method: 'POST', path: `${ref.path}/blobs/uploads/`, scope, domain, headers: { 'content-length': '0' } });
      const location = headerValue(start, 'location');
      if (start.statusCode !== 202 || !location) throw await this.pushError(e, start, `start of the upload of ${digest} to ${ref.name}`);
      start.resume();
      const url = new URL(location, `${e.scheme}://${e.host}`);
      url.searchParams.set('digest', digest);
      const put = await this.transport.request(e, { method: 'PUT', path: url, scope, domain, headers: { 'content-type': 'application/octet-stream' }, body: data });
      if (put.statusCode !== 201) throw await this.pushError(e, put, `upload of ${digest} to ${ref.name}`);
      put.resume();
      return true;
    });
  }

  /** Store a manifest or index under a tag or its digest; returns its digest. */
  async pushManifest(refOrString: RepositoryRef, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string> {
    const ref = repository(refOrString);
    const digest = sha256Digest(bytes);
    if (isDigest(tagOrDigest) && digestLike(tagOrDigest, bytes) !== tagOrDigest) {
      throw new BerthError('invalid-argument', `manifest for ${ref.name}: bytes do not have digest ${tagOrDigest}`);
    }
    return this.withPushEndpoint(ref, async (e) => {
      const scope = repositoryScope(ref.path, true);
      const res = await this.transport.request(e, { method: 'PUT', path: `${ref.path}/manifests/${tagOrDigest}`, scope, domain: ref.domain, headers: { 'content-type': mediaType }, body: bytes });
      if (res.statusCode !== 201) throw await this.pushError(e, res, `manifest ${ref.name}:${tagOrDigest}`);
      res.resume();
      return digest;
    });
  }

  private async pushError(e: RegistryEndpoint, res: IncomingMessage, what: string): Promise<BerthError> {
    const detail = await errorDetail(res);
    return new BerthError('not-available', `${e.host} refused the ${what}: HTTP ${res.statusCode}${detail ? ` ${detail}` : ''}`);
  }

  // Pushes go to the first endpoint with the push capability; failing over could split an image.
  private async withPushEndpoint<T>(ref: ImageReference, push: (e: RegistryEndpoint) => Promise<T>): Promise<T> {
    const e = this.endpoints(ref, 'push')[0]!;
    try {
      return await push(e);
    } catch (err) {
      if (err instanceof RegistryHttpError) throw new BerthError('failed-precondition', err.message, { cause: err });
      if (err instanceof BerthError) throw err;
      throw new BerthError('not-available', `push to ${e.host} for ${ref.name}: ${errorMessage(err)}`, { cause: err });
    }
  }

  close(): void {
    this.transport.close();
  }
}

