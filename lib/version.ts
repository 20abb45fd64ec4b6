// The suite's version: every daemon reports it (--version, logs, CRI Version, CSI
// GetPluginInfo). Kept equal to package.json's version (a unit test checks).
export const berthVersion = '0.1.0';
