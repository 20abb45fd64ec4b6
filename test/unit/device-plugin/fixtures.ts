import { BerthError } from '../../../lib/errors.js';

// Shared by the berth-gpu planner tests.

/** The BerthError `fn` throws (the planners report bad input this way). */
export function errorOf(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error('expected a BerthError');
}
