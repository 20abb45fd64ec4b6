import { BerthError } from '../../lib/errors.js';

// Image references as Docker and containerd read them: `busybox` is
// `docker.io/library/busybox:latest`; the first path component is a registry host when it has
// a dot or a port or is `localhost`; `@sha256:<hex>` pins a digest (a tag next to it is dropped,
// as containerd's CRI does, since the digest alone decides the content).

export const defaultDomain = 'docker.io';

export interface ImageReference {
  /** Registry host as written (`docker.io`, `127.0.0.1:5000`). */
  domain: string;
  /** Repository path inside the registry (`library/busybox`). */
  path: string;
  tag?: string;
  digest?: string;
  /** `domain/path` */
  name: string;
  /** `name:tag` or `name@digest`: the key images are stored under. */
  normalized: string;
  /** The short form people type: `busybox:latest`, `kube/pause:3`, `127.0.0.1:5000/a:b`. */
  familiar: string;
}

// Grammar of the distribution reference spec (docker/distribution reference/regexp.go, in words):
// components are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^sha256:[a-f0-9]{64}$/;
const domainPattern = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:.]+\])(?::\d{1,5})?$/;
const maxNameLength = 255;

function isDomain(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

function invalid(ref: string, why: string): BerthError {
  return new BerthError('invalid-argument', `image reference "${ref}": ${why}`);
}

export function parseReference(ref: string): ImageReference {
  const raw = ref.trim();
  if (!raw) throw new BerthError('invalid-argument', 'image reference is empty');
  // Docker refuses these so that an image ID is never mistaken for a repository name.
  if (/^[a-f0-9]{64}$/.test(raw)) throw invalid(ref, 'a 64-hex string is an image ID, not a repository name');
  let rest = raw;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw invalid(ref, `digest "${digest}" is not sha256:<64 lowercase hex digits>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) throw invalid(ref, `tag "${tag}" is invalid (word characters, "." and "-", at most 128, not starting with "." or "-")`);
  }
  const parts = rest.split('/');
  let domain = defaultDomain;
  if (parts.length > 1 && isDomain(parts[0]!)) {
    domain = parts.shift()!;
    if (!domainPattern.test(domain)) throw invalid(ref, `registry host "${domain}" is invalid`);
  }
  if (domain === 'index.docker.io') domain = defaultDomain;
  if (domain === defaultDomain && parts.length === 1) parts.unshift('library');
  for (const p of parts) {
    if (p !== p.toLowerCase() && pathComponent.test(p.toLowerCase())) throw invalid(ref, `repository name must be lowercase ("${p}")`);
    if (!pathComponent.test(p)) throw invalid(ref, `repository component "${p}" is invalid (lowercase letters, digits and separators . _ __ -)`);
  }
  const path = parts.join('/');
  const name = `${domain}/${path}`;
  if (name.length > maxNameLength) throw invalid(ref, `repository name is longer than ${maxNameLength} characters`);
  if (!digest && !tag) tag = 'latest';
  const suffix = digest ? `@${digest}` : `:${tag}`;
  return {
    domain,
    path,
    ...(tag && !digest ? { tag } : {}),
    ...(digest ? { digest } : {}),
    name,
    normalized: `${name}${suffix}`,
    familiar: `${familiarName(domain, path)}${suffix}`,
  };
}

/** `busybox` for docker.io/library/busybox, `a/b` for docker.io/a/b, the full name elsewhere. */
export function familiarName(domain: string, path: string): string {
  if (domain !== defaultDomain) return `${domain}/${path}`;
  return path.startsWith('library/') && path.split('/').length === 2 ? path.slice('library/'.length) : path;
}

/** Whether `s` is a full image ID: `sha256:<64 hex>` or the bare 64 hex digits. */
export function isImageId(s: string): boolean {
  return /^(sha256:)?[a-f0-9]{64}$/.test(s);
}

/**
 * The hex of an image ID or of an ID prefix a user may type (`sha256:ab12…`, `ab12…`, at least
 * 3 digits as Docker's short IDs); undefined when `s` cannot be one.
 */
export function imageIdPrefix(s: string): string | undefined {
  const m = /^(?:sha256:)?([a-f0-9]{3,64})$/.exec(s);
  return m ? m[1] : undefined;
}
