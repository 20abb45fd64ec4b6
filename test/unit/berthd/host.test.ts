import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ComponentHost } from '../../../berthd/host.js';
import type { Component, ComponentContext, ComponentFactory, ComponentName } from '../../../lib/component.js';

/** A component whose behaviour each test sets; it records what the host asked of it. */
class FakeComponent implements Component {
  static made: FakeComponent[] = [];
  failStart?: Error;
  hangStop = false;
  readyReason?: string;
  events: string[] = [];
  constructor(
    readonly name: ComponentName,
    public config: unknown,
    readonly context: ComponentContext,
  ) {
    FakeComponent.made.push(this);
  }
  start = async (): Promise<void> => {
    this.events.push('start');
    const plan = plans.get(this.name)?.shift();
    if (plan) throw plan;
  };
  stop = async (): Promise<void> => {
    this.events.push('stop');
    if (this.hangStop) await new Promise(() => undefined);
  };
  notReady = (): string | undefined => this.readyReason;
  metrics = (): string => `fake_metric{component="${this.name}"} 1\n`;
}

/** Errors the next starts of a component throw, in order. */
const plans = new Map<ComponentName, Error[]>();

function hostWith(options: { reload?: boolean; stopTimeoutMs?: number } = {}) {
  const changes: string[] = [];
  const log = pino({ level: 'silent' });
  const host: ComponentHost = new ComponentHost({
    log,
    load: async (name) => ((config: unknown, context: ComponentContext) => {
      const c = new FakeComponent(name, config, context);
      if (options.reload) (c as Component).reload = async (next) => void c.events.push(`reload ${JSON.stringify(next)}`);
      return c;
    }) as ComponentFactory<unknown>,
    logLevel: () => 'silent',
    restartBackoffMinMs: 20,
    restartBackoffMaxMs: 80,
    stopTimeoutMs: options.stopTimeoutMs,
    onChange: () => changes.push(host.statuses().map((s) => `${s.name}:${s.state}`).join(',')),
  });
  return { host, changes };
}

const of = (name: ComponentName) => FakeComponent.made.filter((c) => c.name === name);
const state = (host: ComponentHost, name: ComponentName) => host.statuses().find((s) => s.name === name);

afterEach(() => {
  FakeComponent.made = [];
  plans.clear();
});

describe('berthd component host', () => {
  it('starts every component and settles once each has started', async () => {
    const { host } = hostWith();
    await host.startAll({ cri: { a: 1 }, cnid: { socket: '/s' } });
    expect(host.settled).toBe(true);
    expect(host.statuses().map((s) => [s.name, s.state, s.notReady])).toEqual([['cri', 'running', undefined], ['cnid', 'running', undefined]]);
    expect(of('cri')[0]!.config).toEqual({ a: 1 });
    expect(host.componentMetrics()).toBe('fake_metric{component="cri"} 1\nfake_metric{component="cnid"} 1\n');
    await host.stopAll();
  });

  it('a component that fails to start is reported while the others run, and started again with a backoff until it works', async () => {
    plans.set('gpu', [new Error('no gpus.json'), new Error('still no gpus.json')]);
    const { host } = hostWith();
    await host.startAll({ gpu: {}, csi: {} });
    expect(host.settled).toBe(true);
    expect(state(host, 'csi')).toMatchObject({ state: 'running', notReady: undefined });
    expect(state(host, 'gpu')).toMatchObject({ state: 'failed', startFailures: 1 });
    expect(state(host, 'gpu')!.notReady).toMatch(/^could not start: no gpus.json \(next start in/);
    // The failed instance was stopped (releasing what a partial start took).
    expect(of('gpu')[0]!.events).toEqual(['start', 'stop']);
    await vi.waitFor(() => expect(state(host, 'gpu')!.state).toBe('running'), { timeout: 2000, interval: 5 });
    expect(state(host, 'gpu')).toMatchObject({ restarts: 2, startFailures: 2 });
    expect(of('gpu')).toHaveLength(3);
    await host.stopAll();
  });

  it('a component that says it is not ready keeps /readyz from passing with its reason', async () => {
    const { host } = hostWith();
    await host.startAll({ gpu: {} });
    of('gpu')[0]!.readyReason = 'not registered with kubelet yet';
    expect(state(host, 'gpu')).toMatchObject({ state: 'running', notReady: 'not registered with kubelet yet' });
    await host.stopAll();
  });

  it('a crash (fatal, or an uncaught exception pinned on it) restarts that component alone', async () => {
    const { host } = hostWith();
    await host.startAll({ csi: {}, cri: {} });
    of('csi')[0]!.context.fatal(new Error('lost the journal'));
    expect(state(host, 'csi')!.state).toBe('stopping');
    await vi.waitFor(() => expect(state(host, 'csi')).toMatchObject({ state: 'running', restarts: 1 }), { timeout: 2000, interval: 5 });
    expect(of('csi').map((c) => c.events)).toEqual([['start', 'stop'], ['start']]);
    expect(of('cri').map((c) => c.events)).toEqual([['start']]);
    // A second report of the same crash while it is being handled changes nothing.
    host.crashed('cri', new Error('one'));
    host.crashed('cri', new Error('two'));
    await vi.waitFor(() => expect(state(host, 'cri')).toMatchObject({ state: 'running', restarts: 1 }), { timeout: 2000, interval: 5 });
    expect(of('cri')).toHaveLength(2);
    await host.stopAll();
  });

  it('knows which component an async callback belongs to', async () => {
    const { host } = hostWith();
    await host.startAll({ overlay: {} });
    const seen = await host.context.run('overlay', () => new Promise((resolve) => setTimeout(() => resolve(host.context.getStore()), 1)));
    expect(seen).toBe('overlay');
    expect(host.context.getStore()).toBeUndefined();
    await host.stopAll();
  });

  it('a stop that hangs is abandoned after the timeout, and the component starts again', async () => {
    const { host } = hostWith({ stopTimeoutMs: 50 });
    await host.startAll({ cri: {} });
    of('cri')[0]!.hangStop = true;
    host.crashed('cri', new Error('boom'));
    await vi.waitFor(() => expect(state(host, 'cri')).toMatchObject({ state: 'running', restarts: 1 }), { timeout: 2000, interval: 5 });
    await host.stopAll();
  });

  it('applies a new configuration: unchanged left alone, changed reloaded or restarted, new started, removed stopped', async () => {
    const { host } = hostWith({ reload: true });
    await host.startAll({ cri: { a: 1 }, csi: { b: 1 }, gpu: {} });
    await host.apply({ cri: { a: 1 }, csi: { b: 2 }, cnid: { socket: '/s' } });
    expect(of('cri').map((c) => c.events)).toEqual([['start']]);
    expect(of('csi').map((c) => c.events)).toEqual([['start', 'reload {"b":2}']]);
    expect(of('gpu').map((c) => c.events)).toEqual([['start', 'stop']]);
    expect(of('cnid').map((c) => c.events)).toEqual([['start']]);
    expect(host.statuses().map((s) => s.name).sort()).toEqual(['cnid', 'cri', 'csi']);
    expect(host.has('gpu')).toBe(false);
    await host.stopAll();
  });

  it('restarts a changed component that cannot reload', async () => {
    const { host } = hostWith();
    await host.startAll({ cri: { a: 1 } });
    await host.apply({ cri: { a: 2 } });
    expect(of('cri').map((c) => [c.config, c.events])).toEqual([[{ a: 1 }, ['start', 'stop']], [{ a: 2 }, ['start']]]);
    expect(state(host, 'cri')!.state).toBe('running');
    await host.stopAll();
  });

  it('stopAll stops everything, and nothing starts again after it', async () => {
    plans.set('gpu', [new Error('later')]);
    const { host } = hostWith();
    await host.startAll({ gpu: {}, cri: {} });
    await host.stopAll();
    expect(host.statuses().map((s) => s.state)).toEqual(['stopped', 'stopped']);
    await new Promise((r) => setTimeout(r, 100));
    expect(of('gpu')).toHaveLength(1);
    expect(of('cri')[0]!.events).toEqual(['start', 'stop']);
  });
});
