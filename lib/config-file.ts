import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { BerthError } from './errors.js';

// What every berth daemon does with its settings: split its command line into flags, read a
// YAML file of settings (flags override it), report a validation failure by field path, and
// accept a unix:// listen address.

/**
 * A setting's name in messages: `key` in a component's own file, `section.key` in berthd's
 * (where every component's settings are one section of one file).
 */
export function settingName(section: string | undefined, key: string): string {
  return section ? `${section}.${key}` : key;
}

/**
 * The first issues of a zod error, as "source: field.path: message" (the path under `section`,
 * if given). zod reports unknown keys once, on the mapping that holds them; each is named here on
 * its own (`csi.bogus: unknown setting`), so the message points at the line to fix.
 */
export function describeZodError(err: z.ZodError, source: string, section?: string): string {
  const where = (path: readonly PropertyKey[]) => (path.length ? settingName(section, path.map(String).join('.')) : (section ?? '(top level)'));
  return err.issues
    .flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys.map((k) => `${source}: ${where([...i.path, k])}: unknown setting`) : [`${source}: ${where(i.path)}: ${i.message}`]))
    .slice(0, 5)
    .join('; ');
}

export function loadConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BerthError('invalid-config', `--config ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new BerthError('invalid-config', `${path}: not valid YAML: ${(err as Error).message}`);
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new BerthError('invalid-config', `${path}: the top level must be a mapping of settings`);
  }
  return (doc ?? {}) as Record<string, unknown>;
}

/** A unix:// listen address or an absolute path (what unixPath accepts). */
export const unixAddress = z.string().refine((a) => /^unix:\/\/\/./.test(a) || a.startsWith('/'), 'must be unix:///path or an absolute path');

/** The path of a unix:// listen address (a bare path is accepted too). */
export function unixPath(address: string, field: string): string {
  if (address.startsWith('unix://')) return address.slice('unix://'.length);
  if (address.startsWith('/')) return address;
  throw new BerthError('invalid-config', `${field}: "${address}" must be unix:///path or an absolute path`);
}

export interface CommandLineFlag {
  name: string;
  /** undefined: a switch, or a flag that was last with no value after it. */
  value: string | undefined;
}

/**
 * The flags of a daemon's command line, `--name value` or `--name=value`; names in `switches`
 * take no separate value. 'help' or 'version' when asked for (before any later flag is read).
 */
export function splitFlags(argv: readonly string[], switches: ReadonlySet<string> = new Set()): CommandLineFlag[] | 'help' | 'version' {
  const flags: CommandLineFlag[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--version') return 'version';
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) flags.push({ name: arg.slice(0, eq), value: arg.slice(eq + 1) });
    else if (switches.has(arg)) flags.push({ name: arg, value: undefined });
    else flags.push({ name: arg, value: argv[++i] });
  }
  return flags;
}

/** A duration setting in milliseconds: seconds as a number, or text like 500ms, 10s, 5m, 24h. */
export const durationMs = z.union([z.number().positive(), z.string().regex(/^\d+(\.\d+)?(ms|s|m|h)$/, 'expected a duration like 500ms, 10s, 5m, 24h')]).transform((v) => {
  if (typeof v === 'number') return v * 1000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v)!;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
});
