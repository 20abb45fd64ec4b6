// The Prometheus text exposition format (version 0.0.4) for the daemons' /metrics: families of
// counters and gauges with optional labels, and histograms. The daemons keep their own numbers
// and describe them here at scrape time.

export const metricsContentType = 'text/plain; version=0.0.4';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels?: Labels;
  value: number;
}

/** Observations counted into cumulative buckets, as a Prometheus histogram exposes them. */
export class Histogram {
  /** counts[i]: observations <= bounds[i]. */
  readonly counts: number[];
  count = 0;
  sum = 0;

  /** `bounds`: the buckets' upper bounds, ascending; +Inf is implied. */
  constructor(readonly bounds: readonly number[]) {
    if (!bounds.every((b, i) => Number.isFinite(b) && (i === 0 || b > bounds[i - 1]!))) throw new Error(`histogram bounds ${JSON.stringify(bounds)} are not finite and ascending`);
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.count++;
    this.sum += value;
    this.bounds.forEach((bound, i) => {
      if (value <= bound) this.counts[i]!++;
    });
  }
}

/** One histogram of a family, with its labels (e.g. one per RPC method). */
export interface HistogramSample {
  labels?: Labels;
  histogram: Histogram;
}

export type MetricFamily =
  | { type: 'counter' | 'gauge'; name: string; help: string; samples: readonly Sample[] }
  | { type: 'histogram'; name: string; help: string; series: readonly HistogramSample[] };

/** A counter: one value, or one sample per label set. */
export function counter(name: string, help: string, samples: number | readonly Sample[]): MetricFamily {
  return { type: 'counter', name, help, samples: typeof samples === 'number' ? [{ value: samples }] : samples };
}

export function gauge(name: string, help: string, samples: number | readonly Sample[]): MetricFamily {
  return { type: 'gauge', name, help, samples: typeof samples === 'number' ? [{ value: samples }] : samples };
}

/** A histogram: one, or one per label set. */
export function histogram(name: string, help: string, h: Histogram | readonly HistogramSample[]): MetricFamily {
  return { type: 'histogram', name, help, series: h instanceof Histogram ? [{ histogram: h }] : h };
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The exposition text of `families`, each as # HELP, # TYPE and its samples. */
export function metricsText(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (!metricName.test(f.name)) throw new Error(`metric name ${JSON.stringify(f.name)} is not valid`);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type !== 'histogram') {
      for (const s of f.samples) lines.push(sampleLine(f.name, s.labels, s.value));
      continue;
    }
    for (const { labels, histogram: h } of f.series) {
      h.bounds.forEach((bound, i) => lines.push(sampleLine(`${f.name}_bucket`, { ...labels, le: formatValue(bound) }, h.counts[i]!)));
      lines.push(sampleLine(`${f.name}_bucket`, { ...labels, le: '+Inf' }, h.count), sampleLine(`${f.name}_sum`, labels, h.sum), sampleLine(`${f.name}_count`, labels, h.count));
    }
  }
  return lines.map((l) => `${l}\n`).join('');
}

function sampleLine(name: string, labels: Labels | undefined, value: number): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => {
    if (!labelName.test(k) || k.startsWith('__')) throw new Error(`label name ${JSON.stringify(k)} of ${name} is not valid`);
    return `${k}="${escapeLabelValue(v)}"`;
  });
  return `${name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`;
}

/** Go's float syntax, which Prometheus parses: JavaScript's, except for the infinities. */
function formatValue(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

// The format escapes \ and newline in HELP, and also " in label values.
const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabelValue = (s: string): string => escapeHelp(s).replace(/"/g, '\\"');
