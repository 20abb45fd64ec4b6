import { BerthError } from '../../lib/errors.js';
import type { AuthConfig, PullImageRequest, PullImageResponse } from '../../proto/gen/runtime/v1/api.js';
import { pullReference } from '../pod/puller.js';
import type { CriRuntime } from '../runtime.js';

// PullImage: the request's reference and credentials handed to the puller (pod/puller.ts),
// which shares one download among concurrent pulls of a reference.

function credentialsOf(auth: AuthConfig | undefined): AuthConfig | undefined {
  if (!auth) return undefined;
  if (!auth.username && !auth.password && !auth.auth && !auth.identityToken && !auth.registryToken) return undefined;
  return auth;
}

export async function pullImage(rt: CriRuntime, req: PullImageRequest): Promise<PullImageResponse> {
  const ref = req.image?.image;
  if (!ref) throw new BerthError('invalid-argument', 'image.image is required');
  const entry = await pullReference(rt, ref, credentialsOf(req.auth));
  return { imageRef: entry.id };
}
