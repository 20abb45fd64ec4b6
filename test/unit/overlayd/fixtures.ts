// Shared by the berth-overlayd unit tests.

/** The message of the error `fn` throws. */
export const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected an error');
};
