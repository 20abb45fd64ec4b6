// Shared by the addon's source files: the path buffer size, Node-style errno errors, and the
// registration of storage.c's and nvml.c's functions.
#ifndef BERTH_NATIVE_H
#define BERTH_NATIVE_H
#include <node_api.h>

#define PATH_BUF 4096

// An Error with .code = "ENOENT"-style name, .errno, .syscall and .path, like Node's fs errors.
napi_value errno_error(napi_env env, int err, const char *what, const char *path);

// A JS string into `buf` (NUL-terminated); 0 when it is not a string or does not fit.
int get_string(napi_env env, napi_value v, char *buf, size_t size);

// Adds loopAttach, loopAttachAndMount, loopDetach, loopSetCapacity, blockDeviceSize,
// setProjectId, getProjectId, quotaSetProject, quotaGetProject and syncfs to `exports`.
void register_storage(napi_env env, napi_value exports);

// Adds nvmlOpen, nvmlDevices, nvmlProbe, nvmlWatchEvents, nvmlStopEvents and nvmlClose to `exports`.
void register_nvml(napi_env env, napi_value exports);

#endif
