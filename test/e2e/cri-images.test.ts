import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../cri-shim/registry/client.js';
import { CriWorld, imageSpec } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { testImages } from '../../world/images.js';
import { isRoot } from '../../world/netns.js';
import { startRegistry, type TestRegistry } from '../../world/registry.js';

// ImageService against a real registry: every way of naming an image finds the same one, and
// pulls through a hosts.toml mirror, by digest, from indexes and Docker manifests all work; a
// registry that needs credentials is pulled from with the request's credentials only.


describe.skipIf(!isRoot)('berth-cri images', () => {
  let world: CriWorld;

  beforeAll(async () => {
    // A registry name that does not resolve, served by the world's registry as its mirror.
    world = await CriWorld.start({ mirrored: ['registry.example.test'] });
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('resolves a tag, the untagged name (:latest), a digest reference and the image ID to the same image', async () => {
    const { imageRef } = await world.images.pullImage({ image: imageSpec(world.image('busybox', 'latest')), auth: undefined, sandboxConfig: undefined });
    const images = testImages();
    expect(imageRef).toBe(images.busybox.config.digest);
    await world.images.pullImage({ image: imageSpec(world.image('busybox', '1')), auth: undefined, sandboxConfig: undefined });
    const digestRef = `${world.registry.host}/berth-test/busybox@${images.busybox.manifest.digest}`;
    await world.images.pullImage({ image: imageSpec(digestRef), auth: undefined, sandboxConfig: undefined });
    const names = [world.image('busybox', '1'), `${world.registry.host}/berth-test/busybox`, digestRef, imageRef, imageRef.slice(7), imageRef.slice(7, 19)];
    const statuses = await Promise.all(names.map((n) => world.images.imageStatus({ image: imageSpec(n), verbose: false })));
    for (const s of statuses) expect(s.image).toEqual(statuses[0]!.image);
    const image = statuses[0]!.image!;
    expect(image.id).toBe(imageRef);
    expect(image.repoTags.sort()).toEqual([world.image('busybox', '1'), world.image('busybox', 'latest')].sort());
    expect(image.repoDigests).toEqual([digestRef]);
    expect(image.size).toBeGreaterThan(0n);
  });

  it('pulls a registry that does not exist through its hosts.toml mirror', async () => {
    const ref = 'registry.example.test/berth-test/busybox:1';
    const { imageRef } = await world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined });
    expect(imageRef).toBe(testImages().busybox.config.digest);
    const { image } = await world.images.imageStatus({ image: imageSpec(ref), verbose: false });
    expect(image?.repoTags).toContain(ref);
    await expect(world.images.pullImage({ image: imageSpec('registry.example.test/berth-test/absent:1'), auth: undefined, sandboxConfig: undefined })).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
  });

  it('reports uid or username from the image config User', async () => {
    for (const [name, expected] of [['busybox-uid', { uid: 1000n, username: '' }], ['busybox-username', { uid: undefined, username: 'berth' }]] as const) {
      await world.images.pullImage({ image: imageSpec(world.image(name)), auth: undefined, sandboxConfig: undefined });
      const { image } = await world.images.imageStatus({ image: imageSpec(world.image(name)), verbose: false });
      expect(image?.uid?.value).toBe(expected.uid);
      expect(image?.username).toBe(expected.username);
    }
  });

  it('pulls this platform from a multi-arch index and a Docker v2 manifest', async () => {
    const images = testImages();
    const multi = await world.images.pullImage({ image: imageSpec(world.image('busybox-multi')), auth: undefined, sandboxConfig: undefined });
    expect(multi.imageRef).toBe(images.busybox.config.digest);
    const docker = await world.images.pullImage({ image: imageSpec(world.image('busybox-docker')), auth: undefined, sandboxConfig: undefined });
    expect(docker.imageRef).toBe(images.busyboxDocker.config.digest);
  });

  it('answers an absent image with no image, an unknown tag with NotFound and a bad name with InvalidArgument', async () => {
    expect((await world.images.imageStatus({ image: imageSpec(world.image('never-pushed')), verbose: false })).image).toBeUndefined();
    await expect(world.images.pullImage({ image: imageSpec(world.image('busybox', 'no-such-tag')), auth: undefined, sandboxConfig: undefined })).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
    await expect(world.images.pullImage({ image: imageSpec('Not/A Valid:ref'), auth: undefined, sandboxConfig: undefined })).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT });
  });

  it('lists pulled images and removes one by any name, idempotently', async () => {
    await world.images.pullImage({ image: imageSpec(world.image('httpd')), auth: undefined, sandboxConfig: undefined });
    const { images } = await world.images.listImages({ filter: undefined });
    const httpd = images.find((i) => i.repoTags.includes(world.image('httpd')));
    expect(httpd).toBeDefined();
    await world.images.removeImage({ image: imageSpec(httpd!.id) });
    expect((await world.images.imageStatus({ image: imageSpec(world.image('httpd')), verbose: false })).image).toBeUndefined();
    await world.images.removeImage({ image: imageSpec(httpd!.id) });
    const fs = await world.images.imageFsInfo({});
    expect(fs.imageFilesystems[0]?.usedBytes?.value).toBeGreaterThan(0n);
  });

  it('pulls an image again at once after removing it, while containerd collects what the removal freed', async () => {
    // The second pull finds the blobs and snapshots still there; containerd's garbage collection,
    // set off by the removal, must not take them between that finding and the labels that keep them.
    for (let i = 0; i < 5; i++) {
      const { imageRef } = await world.images.pullImage({ image: imageSpec(world.image('httpd')), auth: undefined, sandboxConfig: undefined });
      await world.images.removeImage({ image: imageSpec(imageRef) });
      const again = await world.images.pullImage({ image: imageSpec(world.image('httpd')), auth: undefined, sandboxConfig: undefined });
      expect(again.imageRef).toBe(imageRef);
      expect((await world.images.imageStatus({ image: imageSpec(world.image('httpd')), verbose: false })).image?.id).toBe(imageRef);
      await world.images.removeImage({ image: imageSpec(imageRef) });
    }
  });

  it('keeps images across a berth-cri restart', async () => {
    const before = (await world.images.listImages({ filter: undefined })).images;
    await world.killCri();
    await world.startCri();
    const after = (await world.images.listImages({ filter: undefined })).images;
    expect(after.map((i) => i.id).sort()).toEqual(before.map((i) => i.id).sort());
  });
});

describe.skipIf(!isRoot)('berth-cri pulls with credentials', () => {
  let world: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w));

  describe('a registry that needs credentials', () => {
    let registry: TestRegistry;
    const user = { user: 'berth', password: 's3cret' };

    beforeAll(async () => {
      registry = await startRegistry({ htpasswd: user });
      const client = new RegistryClient({ auth: { username: user.user, password: user.password } });
      const img = testImages().busybox;
      for (const blob of [...img.layers, img.config]) await client.pushBlob(`${registry.host}/private/busybox`, blob.digest, blob.bytes);
      await client.pushManifest(`${registry.host}/private/busybox`, '1', img.manifest.bytes, img.manifest.mediaType);
      client.close();
    }, 60_000);

    afterAll(async () => {
      await registry?.stop();
    });

    it('pulls with the request credentials and refuses without or with wrong ones', async () => {
      const ref = `${registry.host}/private/busybox:1`;
      const none = { username: '', password: '', auth: '', serverAddress: '', identityToken: '', registryToken: '' };
      await expect(world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined })).rejects.toMatchObject({ details: expect.stringMatching(/credentials|unauthorized|401/i) });
      await expect(world.images.pullImage({ image: imageSpec(ref), auth: { ...none, username: 'berth', password: 'wrong' }, sandboxConfig: undefined })).rejects.toBeDefined();
      const auth = { ...none, auth: Buffer.from('berth:s3cret').toString('base64') };
      const { imageRef } = await world.images.pullImage({ image: imageSpec(ref), auth, sandboxConfig: undefined });
      expect(imageRef).toBe(testImages().busybox.config.digest);
    });
  });
});
