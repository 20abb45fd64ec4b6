import { describe, expect, it } from 'vitest';
import { counter, gauge, histogram, Histogram, metricsText } from '../../../lib/metrics.js';

describe('metricsText (Prometheus text format 0.0.4)', () => {
  it('writes HELP, TYPE and the sample of an unlabelled counter and gauge, one line each, newline-terminated', () => {
    expect(metricsText([counter('jobs_total', 'Jobs run.', 3), gauge('queue_depth', 'Jobs waiting.', 0.5)])).toBe(
      ['# HELP jobs_total Jobs run.', '# TYPE jobs_total counter', 'jobs_total 3', '# HELP queue_depth Jobs waiting.', '# TYPE queue_depth gauge', 'queue_depth 0.5', ''].join('\n'),
    );
  });

  it('writes one sample per label set, labels in the order given', () => {
    const text = metricsText([
      gauge('devices', 'Devices by health.', [
        { labels: { health: 'healthy', node: 'a' }, value: 2 },
        { labels: { health: 'unhealthy', node: 'a' }, value: 0 },
      ]),
    ]);
    expect(text.split('\n').slice(2)).toEqual(['devices{health="healthy",node="a"} 2', 'devices{health="unhealthy",node="a"} 0', '']);
  });

  it('escapes backslash, double quote and newline in label values', () => {
    const text = metricsText([gauge('g', 'h', [{ labels: { path: 'C:\\dir "x"\nnext' }, value: 1 }])]);
    expect(text).toContain('g{path="C:\\\\dir \\"x\\"\\nnext"} 1\n');
  });

  it('escapes backslash and newline in HELP, but not double quotes', () => {
    const text = metricsText([counter('c_total', 'a "quoted" \\ word\nsecond line', 1)]);
    expect(text.split('\n')[0]).toBe('# HELP c_total a "quoted" \\\\ word\\nsecond line');
  });

  it('writes infinities as +Inf and -Inf, and NaN as NaN', () => {
    const text = metricsText([gauge('g', 'h', [{ labels: { k: 'a' }, value: Infinity }, { labels: { k: 'b' }, value: -Infinity }, { labels: { k: 'c' }, value: NaN }])]);
    expect(text.split('\n').slice(2, 5)).toEqual(['g{k="a"} +Inf', 'g{k="b"} -Inf', 'g{k="c"} NaN']);
  });

  it('refuses metric and label names the format does not allow', () => {
    expect(() => metricsText([counter('bad-name', 'h', 1)])).toThrow(/bad-name/);
    expect(() => metricsText([counter('9lives', 'h', 1)])).toThrow(/9lives/);
    expect(() => metricsText([gauge('g', 'h', [{ labels: { 'a-b': 'x' }, value: 1 }])])).toThrow(/a-b/);
    expect(() => metricsText([gauge('g', 'h', [{ labels: { __name__: 'x' }, value: 1 }])])).toThrow(/__name__/);
  });

  it('writes nothing for no families', () => {
    expect(metricsText([])).toBe('');
  });
});

describe('Histogram', () => {
  it('counts an observation in every bucket whose upper bound it does not exceed (cumulative, le is inclusive)', () => {
    const h = new Histogram([0.1, 1, 5]);
    for (const v of [0.05, 0.1, 0.5, 1, 7]) h.observe(v);
    expect(h.counts).toEqual([2, 4, 4]);
    expect(h.count).toBe(5);
    expect(h.sum).toBeCloseTo(8.65);
  });

  it('is written as _bucket lines with le, the +Inf bucket equal to _count, then _sum and _count', () => {
    const h = new Histogram([0.001, 0.5, 1]);
    h.observe(0.25);
    h.observe(3);
    expect(metricsText([histogram('op_seconds', 'Time per op.', h)])).toBe(
      [
        '# HELP op_seconds Time per op.',
        '# TYPE op_seconds histogram',
        'op_seconds_bucket{le="0.001"} 0',
        'op_seconds_bucket{le="0.5"} 1',
        'op_seconds_bucket{le="1"} 1',
        'op_seconds_bucket{le="+Inf"} 2',
        'op_seconds_sum 3.25',
        'op_seconds_count 2',
        '',
      ].join('\n'),
    );
  });

  it('writes one series per label set, le after the family labels', () => {
    const a = new Histogram([1]);
    const b = new Histogram([1]);
    a.observe(0.5);
    b.observe(2);
    expect(metricsText([histogram('rpc_seconds', 'Per method.', [{ labels: { method: 'A' }, histogram: a }, { labels: { method: 'B' }, histogram: b }])])).toBe(
      [
        '# HELP rpc_seconds Per method.',
        '# TYPE rpc_seconds histogram',
        'rpc_seconds_bucket{method="A",le="1"} 1',
        'rpc_seconds_bucket{method="A",le="+Inf"} 1',
        'rpc_seconds_sum{method="A"} 0.5',
        'rpc_seconds_count{method="A"} 1',
        'rpc_seconds_bucket{method="B",le="1"} 0',
        'rpc_seconds_bucket{method="B",le="+Inf"} 1',
        'rpc_seconds_sum{method="B"} 2',
        'rpc_seconds_count{method="B"} 1',
        '',
      ].join('\n'),
    );
  });

  it('refuses bounds that are not finite and ascending', () => {
    expect(() => new Histogram([1, 0.5])).toThrow(/ascending/);
    expect(() => new Histogram([1, 1])).toThrow(/ascending/);
    expect(() => new Histogram([1, Infinity])).toThrow(/finite/);
  });
});
