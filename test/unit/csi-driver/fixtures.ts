import { BerthError } from '../../../lib/errors.js';
import { VolumeCapability_AccessMode_Mode as Mode } from '../../../proto/gen/csi.js';

// Shared by the berth-csi unit tests.

/** "kind: message" of the BerthError `fn` throws, or undefined if it throws nothing. */
export function kindOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof BerthError ? `${err.kind}: ${err.message}` : String(err);
  }
  return undefined;
}

/** A mount volume capability with this access mode and fsType. */
export const mount = (mode = Mode.SINGLE_NODE_WRITER, fsType = '') => ({ mount: { fsType, mountFlags: [], volumeMountGroup: '' }, accessMode: { mode } });
