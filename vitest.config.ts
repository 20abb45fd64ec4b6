import { defineConfig } from 'vitest/config';

// Integration tests share host-global state (iptables, nft, ip_forward, bridges), so files
// run one at a time; inside a file, tests use their own namespaces and names.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['world/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
