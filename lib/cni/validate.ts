import { BerthError } from '../errors.js';
import { isIpAddress } from '../ip.js';

// Small typed readers for plugin configuration. Every error names the field path and the value
// (spec: "the error message must contain the key and value of the unsupported field").
// Hand-written instead of zod: zod costs ~70 ms of start-up, on the pod's critical path.

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(path: string, expected: string, value: unknown): BerthError {
  return new BerthError('invalid-config', `${path}: expected ${expected}, got ${JSON.stringify(value)}`);
}

export function optString(obj: Json, key: string, path: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${path}${key}`, 'a string', v);
  return v;
}

export function reqString(obj: Json, key: string, path: string): string {
  const v = optString(obj, key, path);
  if (v === undefined || v === '') throw new BerthError('invalid-config', `${path}${key}: required field is missing`);
  return v;
}

export function optBool(obj: Json, key: string, path: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(`${path}${key}`, 'true or false', v);
  return v;
}

export function optInt(obj: Json, key: string, path: string, min: number, max: number): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${path}${key}`, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

export function optEnum<T extends string>(obj: Json, key: string, path: string, allowed: readonly T[]): T | undefined {
  const v = optString(obj, key, path);
  if (v === undefined || v === '') return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw invalid(`${path}${key}`, `one of ${allowed.join(', ')}`, v);
  return v as T;
}

export function optObject(obj: Json, key: string, path: string): Json | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(`${path}${key}`, 'an object', v);
  return v;
}

export function optArray(obj: Json, key: string, path: string): unknown[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid(`${path}${key}`, 'an array', v);
  return v;
}

export function optIp(obj: Json, key: string, path: string): string | undefined {
  const v = optString(obj, key, path);
  if (v === undefined || v === '') return undefined;
  if (!isIpAddress(v)) throw invalid(`${path}${key}`, 'an IP address', v);
  return v;
}

/** Check a string is an interface name the kernel accepts (IFNAMSIZ, no '/', no whitespace). */
export function validInterfaceName(name: string): boolean {
  return name.length > 0 && name.length < 16 && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}
