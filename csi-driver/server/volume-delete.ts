import { BerthError } from '../../lib/errors.js';
import type { DeleteVolumeRequest, DeleteVolumeResponse } from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { crashPoint } from '../faults.js';
import { requireId } from '../validate.js';

// DeleteVolume: idempotent (an unknown ID is already deleted); refused while the volume is
// staged or published on the node, since its bytes are in use.

export async function deleteVolume(driver: Driver, req: DeleteVolumeRequest): Promise<DeleteVolumeResponse> {
  const id = requireId(req.volumeId, 'volume_id');
  return driver.exclusive([id], () => {
    const rec = driver.volume(id);
    if (!rec) return {};
    const inUse = rec.staging ? `staged at ${rec.staging.path}` : Object.keys(rec.publications).length ? `published at ${Object.keys(rec.publications).join(', ')}` : undefined;
    if (inUse) throw new BerthError('failed-precondition', `volume_id: volume "${id}" is in use (${inUse}); unpublish and unstage it first`);
    // Forget first, then remove: a crash in between leaves bytes no record owns, which
    // recovery removes; the other order could leave a record pointing at nothing.
    driver.forgetVolume(id);
    crashPoint('delete:after-forget');
    driver.storage.removeVolume(rec);
    driver.log.info({ volume: id, name: rec.name, type: rec.type }, 'volume deleted');
    return {};
  });
}
