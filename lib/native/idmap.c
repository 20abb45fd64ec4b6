// User namespaces and idmapped mounts, for berth's native addon (addon.c registers these).
//
// newUserns(userPin, netPin, uidMap, gidMap): a new user namespace with the given
// /proc/<pid>/uid_map and gid_map text, and (when netPin is not "") a network namespace owned by
// it, each pinned by a bind mount onto a new empty file, as `ip netns add` pins a netns. No
// process is left behind: a child is cloned into the new namespaces only long enough for its
// maps to be written and its namespace files bound. A pod's containers join the pinned user
// namespace, and the pinned file is what idmapped mounts are made with, before any of the pod's
// processes exist.
//
// idmapBind(source, target, usernsPath, recursive): a clone of the mount tree at `source`
// (open_tree OPEN_TREE_CLONE), idmapped with the user namespace at usernsPath
// (mount_setattr MOUNT_ATTR_IDMAP), attached at `target` (move_mount). runc 1.1 cannot make
// idmapped mounts; a plain bind of `target` keeps the idmapping, so runc is handed that.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>
#include <node_api.h>

#include "native.h"

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif

// Write all of `text` to /proc/<pid>/<name>; 0 or an errno.
static int write_proc_file(pid_t pid, const char *name, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  size_t len = strlen(text);
  // The kernel takes a map in one write, or not at all.
  ssize_t n = write(fd, text, len);
  int err = n == (ssize_t)len ? 0 : (n < 0 ? errno : EIO);
  close(fd);
  return err;
}

// Bind /proc/<pid>/ns/<ns> onto a new empty file at `pin`; 0 or an errno (`what` says which call).
static int pin_namespace(pid_t pid, const char *ns, const char *pin, const char **what) {
  int fd = open(pin, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) {
    *what = "open";
    return errno;
  }
  close(fd);
  char source[64];
  snprintf(source, sizeof source, "/proc/%d/ns/%s", (int)pid, ns);
  if (mount(source, pin, NULL, MS_BIND, NULL) != 0) {
    int err = errno;
    unlink(pin);
    *what = "mount";
    return err;
  }
  return 0;
}

static napi_value new_userns(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char user_pin[PATH_BUF], net_pin[PATH_BUF], uid_map[PATH_BUF], gid_map[PATH_BUF];
  if (argc < 4 || !get_string(env, argv[0], user_pin, sizeof user_pin) || user_pin[0] != '/' || !get_string(env, argv[1], net_pin, sizeof net_pin) ||
      (net_pin[0] != '\0' && net_pin[0] != '/') || !get_string(env, argv[2], uid_map, sizeof uid_map) || !get_string(env, argv[3], gid_map, sizeof gid_map)) {
    napi_throw_type_error(env, NULL, "newUserns(userPin, netPin, uidMap, gidMap): absolute pin paths (netPin may be \"\") and map texts");
    return NULL;
  }
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) {
    napi_throw(env, errno_error(env, errno, "pipe2", user_pin));
    return NULL;
  }
  // A raw clone with fork semantics: the child only blocks on the pipe and exits, both
  // async-signal-safe, so cloning from this multi-threaded process is safe.
  unsigned long flags = CLONE_NEWUSER | SIGCHLD | (net_pin[0] ? CLONE_NEWNET : 0);
  pid_t child = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
  if (child < 0) {
    int err = errno;
    close(gate[0]);
    close(gate[1]);
    napi_throw(env, errno_error(env, err, "clone", user_pin));
    return NULL;
  }
  if (child == 0) {
    char byte;
    close(gate[1]);
    while (read(gate[0], &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(gate[0]);
  const char *what = "write";
  const char *where = user_pin;
  int err = write_proc_file(child, "uid_map", uid_map);
  if (err == 0) err = write_proc_file(child, "gid_map", gid_map);
  int user_pinned = 0;
  if (err == 0) {
    err = pin_namespace(child, "user", user_pin, &what);
    user_pinned = err == 0;
  }
  if (err == 0 && net_pin[0]) {
    where = net_pin;
    err = pin_namespace(child, "net", net_pin, &what);
  }
  close(gate[1]);
  while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
  }
  if (err != 0) {
    if (user_pinned) {
      umount2(user_pin, MNT_DETACH);
      unlink(user_pin);
    }
    napi_throw(env, errno_error(env, err, what, where));
  }
  return NULL;
}

static napi_value idmap_bind(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char source[PATH_BUF], target[PATH_BUF], userns[PATH_BUF];
  bool recursive = false;
  if (argc < 4 || !get_string(env, argv[0], source, sizeof source) || source[0] != '/' || !get_string(env, argv[1], target, sizeof target) || target[0] != '/' ||
      !get_string(env, argv[2], userns, sizeof userns) || userns[0] != '/' || napi_get_value_bool(env, argv[3], &recursive) != napi_ok) {
    napi_throw_type_error(env, NULL, "idmapBind(source, target, usernsPath, recursive): three absolute paths and a boolean");
    return NULL;
  }
  int ns = open(userns, O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    napi_throw(env, errno_error(env, errno, "open", userns));
    return NULL;
  }
  clone_set_attach(env, source, target, recursive, MOUNT_ATTR_IDMAP, 0, (unsigned long long)ns);
  close(ns);
  return NULL;
}

void register_idmap(napi_env env, napi_value exports) {
  static const named_function functions[] = {{"newUserns", new_userns}, {"idmapBind", idmap_bind}};
  export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
