// A minimal structured logger for CNI executables: pino-shaped JSON lines on stderr (stdout
// belongs to the result). pino itself costs ~35 ms to load, which a plugin spawned per pod
// cannot afford. Level from BERTH_LOG_LEVEL (default warn).

const ranks = { error: 50, warn: 40, info: 30, debug: 20 } as const;
type Level = keyof typeof ranks;

function threshold(): number {
  const env = process.env.BERTH_LOG_LEVEL;
  if (env === 'silent') return Infinity;
  return env && env in ranks ? ranks[env as Level] : ranks.warn;
}

export interface CniLogger {
  error(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  debug(fields: Record<string, unknown>, msg: string): void;
}

export function cniLogger(component: string, context: Record<string, unknown> = {}): CniLogger {
  const min = threshold();
  const write = (level: Level) => (fields: Record<string, unknown>, msg: string) => {
    if (ranks[level] < min) return;
    const line = { level, time: new Date().toISOString(), component, pid: process.pid, ...context, ...fields, msg };
    process.stderr.write(JSON.stringify(line) + '\n');
  };
  return { error: write('error'), warn: write('warn'), info: write('info'), debug: write('debug') };
}
