import { readFileSync, writeFileSync } from 'node:fs';

// /proc/sys/net reflects the network namespace of the thread that opens it, so these work inside
// withNetns() as well (they are synchronous, on the calling thread).

export function sysctlPath(key: string): string {
  return '/proc/sys/' + key.replace(/\./g, '/');
}

export function readSysctl(key: string): string {
  return readFileSync(sysctlPath(key), 'utf8').trim();
}

/** Write a sysctl only when it differs (a write can be costly, e.g. ip_forward). */
export function writeSysctl(key: string, value: string): void {
  const path = sysctlPath(key);
  if (readFileSync(path, 'utf8').trim() === value) return;
  writeFileSync(path, value);
}
