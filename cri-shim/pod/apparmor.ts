import { readFileSync } from 'node:fs';

// Whether the host enforces AppArmor, which decides the profile the spec builders set.

export function apparmorEnabled(): boolean {
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}
