// berth's native addon: the few syscalls Node lacks on hot paths. Plain N-API, no C++.
//
// withNetns(path, fn): enter the network namespace at `path` on the calling thread, call fn()
// synchronously, and always switch back, also when fn throws. Only the calling thread moves
// (setns acts per thread), so libuv's pool threads stay where they were.
//
// mkfifo(path, mode): create a named pipe (container stdio); Node has no binding for mkfifo(3).
//
// connectTcp(host, port, timeoutMs): a TCP socket connected to a numeric IPv4/IPv6 address,
// returned as a non-blocking fd for net.Socket({ fd }). The socket belongs to the network
// namespace of the calling thread when it is created, so withNetns(path, () => connectTcp(...))
// reaches a pod's localhost (CRI port-forward). Loopback connects answer at once; the timeout
// only bounds a port that drops packets.
//
// Loop devices, project quotas and syncfs for the CSI driver are in storage.c.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

// withNetns's failures to enter: errno_error plus a marker.
static void throw_errno(napi_env env, int err, const char *what, const char *path) {
  napi_value error = errno_error(env, err, what, path), marker;
  // Lets the JS side tell "could not enter" apart from errors thrown by the callback.
  napi_get_boolean(env, true, &marker);
  napi_set_named_property(env, error, "netnsEntry", marker);
  napi_throw(env, error);
}

static napi_value with_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type;
  if (argc < 2 || napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "withNetns(path, fn): fn must be a function");
    return NULL;
  }
  char path[PATH_BUF];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "withNetns(path, fn): path must be a non-empty string");
    return NULL;
  }

  // Our own namespace first: if it cannot be opened we must not leave it.
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    throw_errno(env, errno, "open", "/proc/thread-self/ns/net");
    return NULL;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(home);
    throw_errno(env, err, "open", path);
    return NULL;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(home);
    throw_errno(env, err, "setns", path);
    return NULL;
  }
  close(target);

  napi_value global, result = NULL;
  napi_get_global(env, &global);
  // A throwing callback leaves a pending exception; it propagates once we return.
  napi_call_function(env, global, argv[1], 0, NULL, &result);

  if (setns(home, CLONE_NEWNET) != 0) {
    // The JS thread would keep running in the container's namespace: nothing safe is left to do.
    napi_fatal_error("berth_native.withNetns", NAPI_AUTO_LENGTH, "cannot return to the original network namespace", NAPI_AUTO_LENGTH);
  }
  close(home);
  return result;
}

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
int get_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok && len < size - 1;
}

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

// newNetns(path): a new network namespace, pinned by a bind mount at `path` (created here, as
// an empty file). unshare(2) runs on a short-lived thread of its own, so no thread of Node's
// ever leaves the host namespace.
struct netns_job {
  const char *path;
  int err;
  const char *what;
};

static void *netns_thread(void *arg) {
  struct netns_job *job = arg;
  if (unshare(CLONE_NEWNET) != 0) {
    job->err = errno;
    job->what = "unshare";
    return NULL;
  }
  char self[64];
  snprintf(self, sizeof self, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
  if (mount(self, job->path, NULL, MS_BIND, NULL) != 0) {
    job->err = errno;
    job->what = "mount";
  }
  return NULL;
}

static napi_value new_netns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_BUF];
  if (argc < 1 || !get_string(env, argv[0], path, sizeof path) || path[0] != '/') {
    napi_throw_type_error(env, NULL, "newNetns(path): path must be absolute");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) {
    napi_throw(env, errno_error(env, errno, "open", path));
    return NULL;
  }
  close(fd);
  struct netns_job job = {path, 0, NULL};
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, netns_thread, &job);
  if (rc != 0) {
    job.err = rc;
    job.what = "pthread_create";
  } else {
    pthread_join(thread, NULL);
  }
  if (job.err != 0) {
    unlink(path);
    napi_throw(env, errno_error(env, job.err, job.what, path));
  }
  return NULL;
}

static napi_value connect_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char host[128];
  uint32_t port = 0, timeout_ms = 0;
  if (argc < 3 || !get_string(env, argv[0], host, sizeof host) || napi_get_value_uint32(env, argv[1], &port) != napi_ok || port == 0 || port > 65535 ||
      napi_get_value_uint32(env, argv[2], &timeout_ms) != napi_ok) {
    napi_throw_type_error(env, NULL, "connectTcp(host, port, timeoutMs): a numeric address, a port 1-65535 and a timeout");
    return NULL;
  }
  struct sockaddr_storage addr;
  socklen_t addr_len;
  memset(&addr, 0, sizeof addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    addr_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    addr_len = sizeof *v6;
  } else {
    napi_throw_type_error(env, NULL, "connectTcp: host must be a numeric IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    napi_throw(env, errno_error(env, errno, "socket", host));
    return NULL;
  }
  if (connect(fd, (struct sockaddr *)&addr, addr_len) != 0) {
    int err = errno;
    if (err == EINPROGRESS) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      int ready = poll(&pfd, 1, (int)timeout_ms);
      socklen_t len = sizeof err;
      if (ready == 0) err = ETIMEDOUT;
      else if (ready < 0) err = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err != 0) {
      close(fd);
      napi_throw(env, errno_error(env, err, "connect", host));
      return NULL;
    }
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "withNetns", NAPI_AUTO_LENGTH, with_netns, NULL, &fn);
  napi_set_named_property(env, exports, "withNetns", fn);
  napi_create_function(env, "mkfifo", NAPI_AUTO_LENGTH, make_fifo, NULL, &fn);
  napi_set_named_property(env, exports, "mkfifo", fn);
  napi_create_function(env, "mount", NAPI_AUTO_LENGTH, do_mount, NULL, &fn);
  napi_set_named_property(env, exports, "mount", fn);
  napi_create_function(env, "umount2", NAPI_AUTO_LENGTH, do_umount2, NULL, &fn);
  napi_set_named_property(env, exports, "umount2", fn);
  napi_create_function(env, "newNetns", NAPI_AUTO_LENGTH, new_netns, NULL, &fn);
  napi_set_named_property(env, exports, "newNetns", fn);
  napi_create_function(env, "connectTcp", NAPI_AUTO_LENGTH, connect_tcp, NULL, &fn);
  napi_set_named_property(env, exports, "connectTcp", fn);
  register_storage(env, exports);
  register_nvml(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
