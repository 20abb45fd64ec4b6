// berth-loopback's ADD and DEL in C, for the shim's standalone path (cni-plugins/cnid/shim.c).
#ifndef BERTH_LOOPBACK_FAST_H
#define BERTH_LOOPBACK_FAST_H
#include <stddef.h>

// Handle CNI_COMMAND `command` with the config `input` (`len` bytes) the way the plugin's
// TypeScript (cni-plugins/loopback/plugin.ts with lib/cni/skeleton.ts) would, and return 0 with
// the result on stdout. Returns -1, with nothing printed and the process's network namespace as
// it was, for anything it does not handle exactly as the TypeScript does (an unusual config, an
// error to report): the caller then runs the TypeScript on the same input.
int loopback_fast(const char *command, const char *input, size_t len);

#endif
