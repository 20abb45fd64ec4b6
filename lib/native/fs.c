// File-system syscalls Node has no binding for, for berth's native addon (addon.c registers them).
//
// mkfifo(path, mode): create a named pipe (container stdio); Node has no binding for mkfifo(3).
// mount and umount2 are described at their definitions.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <node_api.h>

#include "native.h"

static napi_value make_fifo(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_BUF];
  size_t len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "mkfifo(path, mode): path must be a non-empty string");
    return NULL;
  }
  uint32_t mode = 0;
  if (napi_get_value_uint32(env, argv[1], &mode) != napi_ok || mode > 07777) {
    napi_throw_type_error(env, NULL, "mkfifo(path, mode): mode must be an integer permission mode");
    return NULL;
  }
  // The umask still applies, as with every file creation; callers chmod if they need exact bits.
  if (mkfifo(path, (mode_t)mode) != 0) {
    napi_throw(env, errno_error(env, errno, "mkfifo", path));
    return NULL;
  }
  return NULL;
}

// mount(source, target, fstype, flags, data) and umount2(target, flags): spawning mount(8)
// costs milliseconds per pod; the syscalls cost microseconds.
static napi_value do_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char source[PATH_BUF], target[PATH_BUF], fstype[64], data[PATH_BUF];
  uint32_t flags = 0;
  if (argc < 5 || !get_string(env, argv[0], source, sizeof source) || !get_string(env, argv[1], target, sizeof target) ||
      !get_string(env, argv[2], fstype, sizeof fstype) || napi_get_value_uint32(env, argv[3], &flags) != napi_ok ||
      !get_string(env, argv[4], data, sizeof data) || target[0] == 0) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data): strings, a non-empty target and integer flags");
    return NULL;
  }
  if (mount(source, target, fstype[0] ? fstype : NULL, (unsigned long)flags, data[0] ? data : NULL) != 0) {
    napi_throw(env, errno_error(env, errno, "mount", target));
  }
  return NULL;
}

static napi_value do_umount2(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char target[PATH_BUF];
  uint32_t flags = 0;
  if (argc < 2 || !get_string(env, argv[0], target, sizeof target) || target[0] == 0 || napi_get_value_uint32(env, argv[1], &flags) != napi_ok) {
    napi_throw_type_error(env, NULL, "umount2(target, flags): a non-empty target and integer flags");
    return NULL;
  }
  if (umount2(target, (int)flags) != 0) {
    napi_throw(env, errno_error(env, errno, "umount2", target));
  }
  return NULL;
}

void register_fs(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mkfifo", NAPI_AUTO_LENGTH, make_fifo, NULL, &fn);
  napi_set_named_property(env, exports, "mkfifo", fn);
  napi_create_function(env, "mount", NAPI_AUTO_LENGTH, do_mount, NULL, &fn);
  napi_set_named_property(env, exports, "mount", fn);
  napi_create_function(env, "umount2", NAPI_AUTO_LENGTH, do_umount2, NULL, &fn);
  napi_set_named_property(env, exports, "umount2", fn);
}
