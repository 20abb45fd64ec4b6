import type { Container } from '../../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import type { Any } from '../../proto/gen/google/protobuf/any.js';
import { type CallOptions, type ContainerdClient, isNotFound } from './client.js';

// containerd's Containers service: the metadata records of berth's containers and pods. Specs
// travel as JSON inside an Any with the runtime-spec type URL; runc options as the shim's
// protobuf message.

export const specTypeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

export const processTypeUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

export const runcV2 = 'io.containerd.runc.v2';

export function jsonAny(typeUrl: string, value: unknown): Any {
  return { typeUrl, value: Buffer.from(JSON.stringify(value)) };
}

export function decodeJsonAny<T>(any: Any | undefined): T | undefined {
  return any ? (JSON.parse(Buffer.from(any.value).toString('utf8')) as T) : undefined;
}

/** containerd.runc.v1.Options, hand-encoded: only the fields berth sets. */
export interface RuncOptions {
  binaryName?: string;
  root?: string;
  systemdCgroup?: boolean;
}

function protoString(field: number, value: string): Buffer {
  const bytes = Buffer.from(value);
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

export function runcOptionsAny(options: RuncOptions): Any {
  const parts: Buffer[] = [];
  if (options.binaryName) parts.push(protoString(6, options.binaryName));
  if (options.root) parts.push(protoString(7, options.root));
  if (options.systemdCgroup) parts.push(varint((9 << 3) | 0), varint(1));
  return { typeUrl: 'containerd.runc.v1.Options', value: Buffer.concat(parts) };
}

export async function createContainerRecord(client: ContainerdClient, container: Omit<Container, 'createdAt' | 'updatedAt'>, options: CallOptions = {}): Promise<Container> {
  const res = await client.unary<{ container?: Container }>('container create', (md, cb) => client.containers.create({ container }, md, cb), options);
  return res.container!;
}

export async function getContainerRecord(client: ContainerdClient, id: string): Promise<Container | undefined> {
  try {
    const res = await client.unary<{ container?: Container }>('container get', (md, cb) => client.containers.get({ id }, md, cb));
    return res.container;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Container records matching containerd filters (e.g. `labels."io.berth.kind"==sandbox`). */
export async function listContainerRecords(client: ContainerdClient, filters: string[] = []): Promise<Container[]> {
  const res = await client.unary<{ containers: Container[] }>('container list', (md, cb) => client.containers.list({ filters }, md, cb));
  return res.containers;
}

/** Replace the given labels and extensions of a container record. */
export async function updateContainerRecord(client: ContainerdClient, container: Container, fields: { labels?: Record<string, string>; extensions?: Record<string, Any> }): Promise<Container> {
  const mask = [...Object.keys(fields.labels ?? {}).map((k) => `labels.${k}`), ...Object.keys(fields.extensions ?? {}).map((k) => `extensions.${k}`)];
  const updated: Container = {
    ...container,
    labels: { ...container.labels, ...fields.labels },
    extensions: { ...container.extensions, ...fields.extensions },
  };
  const res = await client.unary<{ container?: Container }>('container update', (md, cb) => client.containers.update({ container: updated, updateMask: mask }, md, cb));
  return res.container!;
}

export async function deleteContainerRecord(client: ContainerdClient, id: string): Promise<void> {
  try {
    await client.unary('container delete', (md, cb) => client.containers.delete({ id }, md, cb));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
