// Injected into CommonJS bundles so code written for ESM can still use import.meta.url.
export const importMetaUrl = require('url').pathToFileURL(__filename).href;
