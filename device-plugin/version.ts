// Reported by --version and in the log; follows the suite's package version.
export const pluginVersion = '0.1.0';
