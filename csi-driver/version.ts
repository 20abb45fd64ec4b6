// Reported by GetPluginInfo and --version; follows the suite's package version.
export const driverVersion = '0.1.0';
