import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Recording fake CNI plugins for the runner tests: shell scripts in a temp CNI_PATH that append
// what they were called with to <dir>/calls.log and print `result` on ADD. Creating
// <dir>/fail-<name>-<COMMAND> makes that command fail with a CNI error.

export interface PluginCall {
  cmd: string;
  plugin: string;
  containerId: string;
  ifname: string;
  args: string;
  conf: Record<string, unknown>;
}

export function writeFakePlugin(dir: string, name: string, result: object): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh
conf=$(cat)
printf '{"cmd":"%s","plugin":"${name}","containerId":"%s","ifname":"%s","args":"%s","conf":%s}\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS" "$conf" >> ${join(dir, 'calls.log')}
if [ -e "${dir}/fail-${name}-$CNI_COMMAND" ]; then echo '{"code":11,"msg":"${name} failed on purpose"}'; exit 1; fi
if [ "$CNI_COMMAND" = ADD ]; then echo '${JSON.stringify(result)}'; fi
`);
  chmodSync(path, 0o755);
}

export function failOn(dir: string, name: string, command: string): void {
  writeFileSync(join(dir, `fail-${name}-${command}`), '');
}

export function pluginCalls(dir: string): PluginCall[] {
  const path = join(dir, 'calls.log');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as PluginCall);
}
