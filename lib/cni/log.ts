// A minimal structured logger for CNI executables: pino-shaped JSON lines on stderr (stdout
// belongs to the result). pino itself costs ~35 ms to load, which a plugin spawned per pod
// cannot afford. Level from BERTH_LOG_LEVEL (default warn).

const ranks = { error: 50, warn: 40, info: 30, debug: 20 } as const;
type Level = keyof typeof ranks;

function threshold(env: string | undefined): number {
  if (env === 'silent') return Infinity;
  return env && env in ranks ? ranks[env as Level] : ranks.warn;
}

export interface CniLogger {
  error(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  debug(fields: Record<string, unknown>, msg: string): void;
}

/** `env`: the request's environment (BERTH_LOG_LEVEL), which in berth-cnid is not the process's. */
export function cniLogger(component: string, context: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): CniLogger {
  const min = threshold(env.BERTH_LOG_LEVEL);
  const write = (level: Level) => (fields: Record<string, unknown>, msg: string) => {
    if (ranks[level] < min) return;
    const line = { level, time: new Date().toISOString(), component, pid: process.pid, ...context, ...fields, msg };
    process.stderr.write(JSON.stringify(line) + '\n');
  };
  return { error: write('error'), warn: write('warn'), info: write('info'), debug: write('debug') };
}
