// Shared by the addon's source files: the path buffer size, the helpers addon.c defines, and
// the register_* function through which each source file adds its functions to the exports.
#ifndef BERTH_NATIVE_H
#define BERTH_NATIVE_H
#include <node_api.h>

#define PATH_BUF 4096

// An Error with .code = "ENOENT"-style name, .errno, .syscall and .path, like Node's fs errors.
napi_value errno_error(napi_env env, int err, const char *what, const char *path);

// A JS string into `buf` (NUL-terminated); 0 when it is not a string or does not fit.
int get_string(napi_env env, napi_value v, char *buf, size_t size);

// One exported function, for export_functions.
typedef struct {
  const char *name;
  napi_callback fn;
} named_function;

// Adds each function to `exports` under its name.
void export_functions(napi_env env, napi_value exports, const named_function *functions, size_t count);

// Adds withNetns, newNetns and connectTcp (setns.c) to `exports`.
void register_netns(napi_env env, napi_value exports);

// Adds mkfifo, mount and umount2 (fs.c) to `exports`.
void register_fs(napi_env env, napi_value exports);

// Adds loopAttach, loopAttachAndMount, loopDetach, loopSetCapacity, blockDeviceSize,
// setProjectId, getProjectId, quotaSetProject, quotaGetProject and syncfs to `exports`.
void register_storage(napi_env env, napi_value exports);

// Adds nvmlOpen, nvmlDevices, nvmlProbe, nvmlWatchEvents, nvmlStopEvents and nvmlClose to `exports`.
void register_nvml(napi_env env, napi_value exports);

// Adds peerCredentials (peercred.c) to `exports`.
void register_peercred(napi_env env, napi_value exports);
// Adds openat2, mkdirat, unlinkat and bindMountFd (paths.c) to `exports`.
void register_paths(napi_env env, napi_value exports);

// Adds sdNotify (notify.c) to `exports`.
void register_notify(napi_env env, napi_value exports);

// Adds trimMemory (memory.c) to `exports`.
void register_memory(napi_env env, napi_value exports);

// Adds newUserns and idmapBind (idmap.c) to `exports`.
void register_idmap(napi_env env, napi_value exports);

// Clone the mount tree at `source` (with everything beneath it when `recursive`), set these
// mount attributes on the clone (mount_setattr), and attach it at `target` (move_mount). 0 on
// success; -1 with a JS error thrown, and nothing left mounted, on failure (mountattr.c).
int clone_set_attach(napi_env env, const char *source, const char *target, int recursive, unsigned long long attr_set, unsigned long long propagation,
                     unsigned long long userns_fd);

// Adds recursiveReadOnlySupported and recursiveReadOnlyBind (mountattr.c) to `exports`.
void register_mountattr(napi_env env, napi_value exports);

#endif
