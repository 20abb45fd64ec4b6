import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { BerthError } from '../errors.js';
import { run } from '../exec.js';
import type { CniCommand, CniResult } from './types.js';
import { parseResult } from './version.js';

// Running a delegated plugin (usually IPAM) the way libcni's invoke package does: same
// environment with CNI_COMMAND set, the config on stdin, the result or error on stdout.

export function findPlugin(type: string, cniPath: readonly string[]): string | undefined {
  if (type.includes('/')) return undefined;
  for (const dir of cniPath) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next directory
    }
  }
  return undefined;
}

export function requirePlugin(type: string, cniPath: readonly string[]): string {
  const found = findPlugin(type, cniPath);
  if (!found) {
    throw new BerthError('not-available', `plugin ${JSON.stringify(type)} not found in CNI_PATH (${cniPath.join(':') || 'empty'})`);
  }
  return found;
}

export async function execPlugin(
  type: string,
  command: CniCommand,
  stdin: string,
  env: NodeJS.ProcessEnv,
  cniPath: readonly string[],
): Promise<CniResult | undefined> {
  const executable = requirePlugin(type, cniPath);
  const result = await run(executable, [], { input: stdin, env: { ...env, CNI_COMMAND: command }, allowFailure: true });
  return interpretOutput(type, command, { exitCode: result.code, stdout: result.stdout, stderr: result.stderr });
}

/** The plugin's printed output turned into a result or a CNI error, as libcni reads it. */
export function interpretOutput(type: string, command: CniCommand, out: { exitCode: number; stdout: string; stderr: string }): CniResult | undefined {
  if (out.exitCode !== 0) {
    let parsed: { code?: unknown; msg?: unknown; details?: unknown } = {};
    try {
      parsed = JSON.parse(out.stdout) as typeof parsed;
    } catch {
      // not an error object: report what we have
    }
    const msg = typeof parsed.msg === 'string' ? parsed.msg : out.stdout.trim() || out.stderr.trim() || `exit ${out.exitCode}`;
    throw new BerthError('internal', `${type}: ${msg}`, {
      cniCode: typeof parsed.code === 'number' ? parsed.code : undefined,
      details: typeof parsed.details === 'string' ? parsed.details : undefined,
    });
  }
  if (command !== 'ADD') return undefined;
  try {
    return parseResult(JSON.parse(out.stdout), `${type} result`);
  } catch (e) {
    throw new BerthError('decode', `${type}: cannot parse its ADD result: ${(e as Error).message}`);
  }
}
