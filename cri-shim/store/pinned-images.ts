// Pinned images (Image.pinned: kubelet's image GC never removes them), configured as CRI-O's
// `pinned_images` are: each pattern is an exact name, a glob with one trailing `*` (the names
// that begin with what precedes it), or a keyword `*word*` (the names that contain it). As in
// CRI-O, matching ignores case. One difference: CRI-O leaves its glob unanchored (so `foo*`
// also pins `bar/foo`); berth matches the documented meaning, a prefix. A `*` anywhere else is
// not a pattern CRI-O knows, so berth refuses it instead of guessing.

export type PinnedImageMatcher = (name: string) => boolean;

/** Why `pattern` is not a pinned-image pattern; undefined when it is one. */
export function pinnedPatternProblem(pattern: string): string | undefined {
  if (pattern.trim() === '') return 'an empty pattern';
  if (/\s/.test(pattern)) return `"${pattern}" contains white space`;
  const inner = pattern.startsWith('*') && pattern.endsWith('*') && pattern.length > 1 ? pattern.slice(1, -1) : pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
  if (inner.includes('*')) return `"${pattern}": a * may only end the pattern (a glob, "name*") or both begin and end it (a keyword, "*word*")`;
  return undefined;
}

function matcherFor(pattern: string): PinnedImageMatcher {
  const p = pattern.toLowerCase();
  if (p.length > 1 && p.startsWith('*') && p.endsWith('*')) {
    const word = p.slice(1, -1);
    return (name) => name.toLowerCase().includes(word);
  }
  if (p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    return (name) => name.toLowerCase().startsWith(prefix);
  }
  return (name) => name.toLowerCase() === p;
}

/** One matcher for a list of (validated) patterns: true when any of them matches the name. */
export function pinnedImageMatcher(patterns: readonly string[]): PinnedImageMatcher {
  const matchers = patterns.map(matcherFor);
  if (matchers.length === 0) return () => false;
  return (name) => matchers.some((m) => m(name));
}
