// berth's native addon (berth_native.node): the few syscalls Node lacks on hot paths, in plain
// N-API C. This file is the module entry: it builds the exports from each source file's
// register_* function and defines the helpers they share (native.h). The functions themselves
// live by topic: setns.c (network namespaces, connectTcp), fs.c (mkfifo, mount, umount2),
// storage.c (loop devices, project quotas, syncfs), nvml.c (NVIDIA GPUs) and paths.c
// (host paths opened and mounted through fds, never through a symlink).
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <node_api.h>

#include "native.h"

// Build an Error with .code = "ENOENT"-style name, .errno, .syscall and .path, like Node's fs errors.
napi_value errno_error(napi_env env, int err, const char *what, const char *path) {
  char msg[PATH_BUF + 128];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
  napi_value code_value, msg_value, error, errno_value;
  char name[32];
#ifdef __GLIBC__
  const char *known = strerrorname_np(err);
  snprintf(name, sizeof name, "%s", known ? known : "EUNKNOWN");
#else
  snprintf(name, sizeof name, "E%d", err);
#endif
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_value);
  napi_create_error(env, code_value, msg_value, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_value syscall;
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall);
  napi_set_named_property(env, error, "syscall", syscall);
  napi_value path_value;
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_value);
  napi_set_named_property(env, error, "path", path_value);
  return error;
}

int get_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok && len < size - 1;
}

void export_functions(napi_env env, napi_value exports, const named_function *functions, size_t count) {
  for (size_t i = 0; i < count; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
}

static napi_value init(napi_env env, napi_value exports) {
  register_netns(env, exports);
  register_fs(env, exports);
  register_storage(env, exports);
  register_nvml(env, exports);
  register_peercred(env, exports);
  register_paths(env, exports);
  register_notify(env, exports);
  register_memory(env, exports);
  register_idmap(env, exports);
  register_mountattr(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
