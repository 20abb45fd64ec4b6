// Host paths resolved and mounted through file descriptors, for berth's native addon (addon.c
// registers them). A path checked with lstat/realpath and then used by name can be swapped for
// a symlink in between; a file descriptor cannot. So berth opens each path once, with the
// kernel refusing symlinks during that very lookup, and from then on works on the descriptor.
//
// openat2(dirfd, path, flags, mode, resolve): openat2(2) with RESOLVE_* flags (always O_CLOEXEC);
//   returns the new fd. ENOSYS on kernels before 5.6, which lib/host-paths.ts turns into a clear error.
// mkdirat(dirfd, name, mode) and unlinkat(dirfd, name, removeDir): relative to a directory fd.
// bindMountFd(sourceFd, targetFd, attrSet, attrClear, recursive): a bind mount from one fd onto
//   another with the new mount API (open_tree, mount_setattr, move_mount; Linux 5.12): the
//   per-mount flags (read-only, nosuid...) are set on the detached copy before it is attached,
//   so a read-only publication is never writable, not even between a bind and its remount.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <node_api.h>

#include "native.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static int get_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static int get_uint(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static napi_value do_openat2(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t dirfd = 0;
  uint32_t flags = 0, mode = 0, resolve = 0;
  char path[PATH_BUF];
  if (argc < 5 || !get_int(env, argv[0], &dirfd) || !get_string(env, argv[1], path, sizeof path) || path[0] == 0 ||
      !get_uint(env, argv[2], &flags) || !get_uint(env, argv[3], &mode) || mode > 07777 || !get_uint(env, argv[4], &resolve)) {
    napi_throw_type_error(env, NULL, "openat2(dirfd, path, flags, mode, resolve): an fd, a non-empty path and integer flags, mode and resolve");
    return NULL;
  }
  struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC, .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0, .resolve = resolve};
  int fd;
  // EAGAIN: a ".." in a RESOLVE_IN_ROOT/BENEATH lookup raced a rename or mount somewhere on the
  // system (openat2(2)); retry, but boundedly: on a busy host renames never stop.
  int tries = 0;
  do {
    fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  } while (fd < 0 && (errno == EAGAIN || errno == EINTR) && ++tries < 64);
  if (fd < 0) {
    napi_throw(env, errno_error(env, errno, "openat2", path));
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// The (dirfd, name, third) arguments of mkdirat and unlinkat; 0 (nothing thrown) when malformed.
static int dirfd_and_name(napi_env env, napi_callback_info info, int32_t *dirfd, char *name, size_t size, napi_value *third) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !get_int(env, argv[0], dirfd) || !get_string(env, argv[1], name, size) || name[0] == 0) return 0;
  *third = argv[2];
  return 1;
}

static napi_value do_mkdirat(napi_env env, napi_callback_info info) {
  int32_t dirfd = 0;
  uint32_t mode = 0;
  char name[PATH_BUF];
  napi_value third;
  if (!dirfd_and_name(env, info, &dirfd, name, sizeof name, &third) || !get_uint(env, third, &mode) || mode > 07777) {
    napi_throw_type_error(env, NULL, "mkdirat(dirfd, name, mode): an fd, a non-empty name and a permission mode");
    return NULL;
  }
  if (mkdirat(dirfd, name, (mode_t)mode) != 0) napi_throw(env, errno_error(env, errno, "mkdirat", name));
  return NULL;
}

static napi_value do_unlinkat(napi_env env, napi_callback_info info) {
  int32_t dirfd = 0;
  bool remove_dir = false;
  char name[PATH_BUF];
  napi_value third;
  if (!dirfd_and_name(env, info, &dirfd, name, sizeof name, &third) || napi_get_value_bool(env, third, &remove_dir) != napi_ok) {
    napi_throw_type_error(env, NULL, "unlinkat(dirfd, name, removeDir): an fd, a non-empty name and a boolean");
    return NULL;
  }
  if (unlinkat(dirfd, name, remove_dir ? AT_REMOVEDIR : 0) != 0) napi_throw(env, errno_error(env, errno, "unlinkat", name));
  return NULL;
}

static napi_value bind_mount_fd(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t source = -1, target = -1;
  uint32_t attr_set = 0, attr_clear = 0;
  bool recursive = false;
  if (argc < 5 || !get_int(env, argv[0], &source) || !get_int(env, argv[1], &target) || source < 0 || target < 0 ||
      !get_uint(env, argv[2], &attr_set) || !get_uint(env, argv[3], &attr_clear) || napi_get_value_bool(env, argv[4], &recursive) != napi_ok) {
    napi_throw_type_error(env, NULL, "bindMountFd(sourceFd, targetFd, attrSet, attrClear, recursive): two fds, integer attributes and a boolean");
    return NULL;
  }
  int tree = (int)syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0) {
    napi_throw(env, errno_error(env, errno, "open_tree", "(source fd)"));
    return NULL;
  }
  if (attr_set || attr_clear) {
    struct mount_attr attr = {.attr_set = attr_set, .attr_clr = attr_clear};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0) {
      int err = errno;
      close(tree);
      napi_throw(env, errno_error(env, err, "mount_setattr", "(detached bind mount)"));
      return NULL;
    }
  }
  // Closing a detached tree that was never attached unmounts it, so a failure leaves nothing.
  if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    int err = errno;
    close(tree);
    napi_throw(env, errno_error(env, err, "move_mount", "(target fd)"));
    return NULL;
  }
  close(tree);
  return NULL;
}

void register_paths(napi_env env, napi_value exports) {
  static const named_function functions[] = {{"openat2", do_openat2}, {"mkdirat", do_mkdirat}, {"unlinkat", do_unlinkat}, {"bindMountFd", bind_mount_fd}};
  export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
