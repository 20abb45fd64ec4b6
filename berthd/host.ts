// The components of one berthd process: each started, stopped, reloaded and restarted on its
// own, so that one that cannot start, or whose code throws, is started again with a backoff
// while the others go on serving. All state a component needs lives outside the process
// (containerd, the kernel, the CSI journal, the lease store), so a restart loses nothing.
import { AsyncLocalStorage } from 'node:async_hooks';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { Component, ComponentFactory, ComponentName } from '../lib/component.js';
import { errorMessage } from '../lib/errors.js';

export type ComponentState = 'starting' | 'running' | 'failed' | 'stopping' | 'stopped';

/** What /readyz, /metrics and STATUS= say of a component. */
export interface ComponentStatus {
  name: ComponentName;
  state: ComponentState;
  /** Why it is not ready (starting, failed, or the component's own reason); undefined when ready. */
  notReady?: string;
  /** Why it is not healthy; undefined when healthy. */
  unhealthy?: string;
  restarts: number;
  startFailures: number;
}

interface Slot {
  name: ComponentName;
  config: unknown;
  state: ComponentState;
  component?: Component;
  error?: string;
  restarts: number;
  startFailures: number;
  backoffMs: number;
  retryTimer?: NodeJS.Timeout;
  runningSince?: number;
  /** The start, stop or restart under way; the next one waits for it. */
  busy: Promise<void>;
  /** The first start attempt has settled (ready or failed): what READY=1 waits for. */
  settledOnce: boolean;
}

export interface HostOptions {
  log: Logger;
  /** Loads a component's code (lazily: a disabled component's code is never loaded). */
  load(name: ComponentName): Promise<ComponentFactory<unknown>>;
  /** The component's log level, from its section. */
  logLevel(name: ComponentName, config: unknown): string;
  restartBackoffMaxMs: number;
  /** First wait before restarting a component (doubles up to restartBackoffMaxMs). */
  restartBackoffMinMs?: number;
  /** How long a stop may take before the component is abandoned. */
  stopTimeoutMs?: number;
  /** A component's state changed (STATUS=, READY=1). */
  onChange?(): void;
}

/** A component that ran this long without trouble starts its next backoff from the minimum again. */
const stableMs = 60_000;

export class ComponentHost {
  /** Which component an async callback belongs to, so an uncaught exception can be pinned on it. */
  readonly context = new AsyncLocalStorage<ComponentName>();
  private readonly slots = new Map<ComponentName, Slot>();
  private closed = false;

  constructor(private readonly options: HostOptions) {}

  /** The first wait, never above the longest (restartBackoffMaxMs may be set below 1 s). */
  private get minBackoff(): number {
    return Math.min(this.options.restartBackoffMinMs ?? 1000, this.options.restartBackoffMaxMs);
  }

  /** Start every component in `configs`; resolves when each has started or failed its first start. */
  async startAll(configs: Partial<Record<ComponentName, unknown>>): Promise<void> {
    await Promise.all(Object.entries(configs).map(([name, config]) => this.add(name as ComponentName, config)));
  }

  private add(name: ComponentName, config: unknown): Promise<void> {
    const slot: Slot = { name, config, state: 'starting', restarts: 0, startFailures: 0, backoffMs: this.minBackoff, busy: Promise.resolve(), settledOnce: false };
    this.slots.set(name, slot);
    return this.serialize(slot, () => this.startSlot(slot));
  }

  /** Run `step` after whatever the slot is doing now. */
  private serialize(slot: Slot, step: () => Promise<void>): Promise<void> {
    slot.busy = slot.busy.then(step, step);
    return slot.busy;
  }

  private logFor(slot: Slot): Logger {
    return this.options.log.child({ component: slot.name }, { level: this.options.logLevel(slot.name, slot.config) });
  }

  private setState(slot: Slot, state: ComponentState, error?: string): void {
    slot.state = state;
    slot.error = error;
    this.options.onChange?.();
  }

  private async startSlot(slot: Slot): Promise<void> {
    if (this.closed || !this.slots.has(slot.name)) return;
    clearTimeout(slot.retryTimer);
    slot.retryTimer = undefined;
    this.setState(slot, 'starting');
    const log = this.logFor(slot);
    try {
      const factory = await this.options.load(slot.name);
      await this.context.run(slot.name, async () => {
        const component = factory(slot.config, { log, fatal: (err) => this.crashed(slot.name, err) });
        slot.component = component;
        await component.start();
      });
      if (this.closed) return;
      slot.runningSince = Date.now();
      this.setState(slot, 'running');
    } catch (err) {
      slot.startFailures++;
      log.error({ err: errorMessage(err) }, 'the component could not start; the others go on');
      await this.stopComponent(slot, log);
      this.scheduleRestart(slot, `could not start: ${errorMessage(err)}`);
    } finally {
      slot.settledOnce = true;
      this.options.onChange?.();
    }
  }

  private async stopComponent(slot: Slot, log: Logger): Promise<void> {
    const component = slot.component;
    slot.component = undefined;
    if (!component) return;
    const timeoutMs = this.options.stopTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.context.run(slot.name, () => component.stop()).then(
        () => false,
        (err: unknown) => void log.warn({ err: errorMessage(err) }, 'stopping the component failed'),
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) log.error({ timeoutMs }, 'the component did not stop in time; abandoned');
  }

  private scheduleRestart(slot: Slot, why: string): void {
    if (this.closed || !this.slots.has(slot.name)) return;
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, this.options.restartBackoffMaxMs);
    this.setState(slot, 'failed', `${why} (next start in ${Math.round(delay / 100) / 10} s)`);
    slot.retryTimer = setTimeout(() => {
      slot.restarts++;
      void this.serialize(slot, () => this.startSlot(slot));
    }, delay);
    slot.retryTimer.unref();
  }

  /**
   * The component's code threw where nothing caught it, or it said it cannot go on: stop it
   * and start it again after the backoff. Ignored while it is already being restarted.
   */
  crashed(name: ComponentName, err: unknown): void {
    const slot = this.slots.get(name);
    if (!slot || (slot.state !== 'running' && slot.state !== 'starting')) return;
    const log = this.logFor(slot);
    log.error({ err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined }, 'the component failed; restarting it, the others go on');
    if (slot.runningSince !== undefined && Date.now() - slot.runningSince > stableMs) slot.backoffMs = this.minBackoff;
    slot.runningSince = undefined;
    this.setState(slot, 'stopping', errorMessage(err));
    void this.serialize(slot, async () => {
      // A start that failed meanwhile has already stopped it and planned the next start.
      if (slot.state === 'failed' || this.closed) return;
      await this.stopComponent(slot, log);
      this.scheduleRestart(slot, `failed: ${errorMessage(err)}`);
    });
  }

  /**
   * A new configuration (SIGHUP): components turned off are stopped, new ones started, changed
   * ones reloaded if they can be and restarted if not; unchanged ones are left alone.
   */
  async apply(configs: Partial<Record<ComponentName, unknown>>): Promise<void> {
    const work: Promise<void>[] = [];
    for (const [name, slot] of this.slots) {
      if (name in configs) continue;
      this.slots.delete(name);
      clearTimeout(slot.retryTimer);
      const log = this.logFor(slot);
      log.info('turned off in the configuration; stopping it');
      work.push(this.serialize(slot, async () => {
        await this.stopComponent(slot, log);
        this.setState(slot, 'stopped');
      }));
    }
    for (const [key, config] of Object.entries(configs)) {
      const name = key as ComponentName;
      const slot = this.slots.get(name);
      if (!slot) {
        work.push(this.add(name, config));
        continue;
      }
      if (isDeepStrictEqual(slot.config, config)) continue;
      const log = this.logFor(slot);
      slot.config = config;
      work.push(this.serialize(slot, async () => {
        const component = slot.component;
        if (slot.state === 'running' && component?.reload) {
          log.info('configuration changed; reloading');
          try {
            await this.context.run(name, () => component.reload!(config));
            return;
          } catch (err) {
            log.error({ err: errorMessage(err) }, 'reload failed; restarting the component');
          }
        } else log.info('configuration changed; restarting the component');
        await this.stopComponent(slot, log);
        slot.backoffMs = this.minBackoff;
        await this.startSlot(slot);
      }));
    }
    await Promise.all(work);
  }

  /** Stop every component (in parallel); no restart happens after this. */
  async stopAll(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.slots.values()].map((slot) => {
        clearTimeout(slot.retryTimer);
        return this.serialize(slot, async () => {
          this.setState(slot, 'stopping');
          await this.stopComponent(slot, this.logFor(slot));
          this.setState(slot, 'stopped');
        });
      }),
    );
  }

  /** Every component has started or failed its first start. */
  get settled(): boolean {
    return [...this.slots.values()].every((s) => s.settledOnce);
  }

  has(name: ComponentName): boolean {
    return this.slots.has(name);
  }

  statuses(): ComponentStatus[] {
    return [...this.slots.values()].map((slot) => {
      const own = slot.state === 'running' ? slot.component?.notReady?.() : undefined;
      const notReady = slot.state === 'running' ? own : slot.state === 'failed' ? (slot.error ?? 'failed') : slot.state;
      return {
        name: slot.name,
        state: slot.state,
        notReady,
        unhealthy: slot.state === 'running' ? slot.component?.unhealthy?.() : undefined,
        restarts: slot.restarts,
        startFailures: slot.startFailures,
      };
    });
  }

  /** The running components' own /metrics text. */
  componentMetrics(): string {
    let text = '';
    for (const slot of this.slots.values()) {
      if (slot.state !== 'running' || !slot.component?.metrics) continue;
      try {
        text += slot.component.metrics();
      } catch (err) {
        this.logFor(slot).warn({ err: errorMessage(err) }, 'the component could not describe its metrics');
      }
    }
    return text;
  }
}
