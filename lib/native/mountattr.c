// Recursive read-only bind mounts, for berth's native addon (addon.c registers these functions).
//
// A read-only bind mount (MS_BIND|MS_REC, then a remount with MS_RDONLY) makes only its top
// mount read-only: every mount beneath the source stays writable through it. mount_setattr(2)
// with AT_RECURSIVE (Linux 5.12) flips the flag on the whole tree at once; berth does that on a
// detached copy and attaches the copy where the OCI runtime can bind it into a container.
//
// recursiveReadOnlySupported(): 0 when this kernel has mount_setattr, else the errno that says
//   why not (ENOSYS on kernels before 5.12, EPERM where a seccomp filter refuses it).
// recursiveReadOnlyBind(source, target): clone the mount tree at `source` (open_tree with
//   OPEN_TREE_CLONE|AT_RECURSIVE), make every mount of the clone read-only and private (one
//   mount_setattr with AT_RECURSIVE), then attach it at `target` (move_mount). The tree is
//   never attached writable, and a failure before move_mount leaves nothing mounted.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>

#include "native.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static napi_value supported(napi_env env, napi_callback_info info) {
  (void)info;
  // Invalid on purpose (no fd, no attributes): a kernel with the syscall answers EBADF or
  // EINVAL without touching any mount; one without it answers ENOSYS.
  long rc = syscall(SYS_mount_setattr, -1, "", 0, NULL, (size_t)0);
  int err = rc == 0 ? 0 : errno;
  if (err == EBADF || err == EINVAL) err = 0;
  napi_value result;
  napi_create_int32(env, err, &result);
  return result;
}

static napi_value rro_bind(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char source[PATH_BUF], target[PATH_BUF];
  if (argc < 2 || !get_string(env, argv[0], source, sizeof source) || source[0] != '/' || !get_string(env, argv[1], target, sizeof target) || target[0] != '/') {
    napi_throw_type_error(env, NULL, "recursiveReadOnlyBind(source, target): two absolute paths");
    return NULL;
  }
  // Private as well: the clone must not receive (or send) mount events through the source's peers.
  clone_set_attach(env, source, target, 1, MOUNT_ATTR_RDONLY, MS_PRIVATE, 0);
  return NULL;
}

int clone_set_attach(napi_env env, const char *source, const char *target, int recursive, unsigned long long attr_set, unsigned long long propagation,
                     unsigned long long userns_fd) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0) {
    napi_throw(env, errno_error(env, errno, "open_tree", source));
    return -1;
  }
  struct mount_attr attr = {.attr_set = attr_set, .propagation = propagation, .userns_fd = userns_fd};
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0) {
    int err = errno;
    // Closing a detached tree that was never attached unmounts all of it: nothing is left behind.
    close(tree);
    napi_throw(env, errno_error(env, err, "mount_setattr", source));
    return -1;
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    int err = errno;
    close(tree);
    napi_throw(env, errno_error(env, err, "move_mount", target));
    return -1;
  }
  close(tree);
  return 0;
}

void register_mountattr(napi_env env, napi_value exports) {
  static const named_function functions[] = {{"recursiveReadOnlySupported", supported}, {"recursiveReadOnlyBind", rro_bind}};
  export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
