// Network namespaces, for berth's native addon (addon.c registers these functions).
//
// withNetns(path, fn): enter the network namespace at `path` on the calling thread, call fn()
// synchronously, and always switch back, also when fn throws. Only the calling thread moves
// (setns acts per thread), so libuv's pool threads stay where they were.
//
// connectTcp(host, port, timeoutMs): a TCP socket connected to a numeric IPv4/IPv6 address,
// returned as a non-blocking fd for net.Socket({ fd }). The socket belongs to the network
// namespace of the calling thread when it is created, so withNetns(path, () => connectTcp(...))
// reaches a pod's localhost (CRI port-forward). Loopback connects answer at once; the timeout
// only bounds a port that drops packets.
//
// newNetns(path) is described at its definition.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
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

void register_netns(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "withNetns", NAPI_AUTO_LENGTH, with_netns, NULL, &fn);
  napi_set_named_property(env, exports, "withNetns", fn);
  napi_create_function(env, "newNetns", NAPI_AUTO_LENGTH, new_netns, NULL, &fn);
  napi_set_named_property(env, exports, "newNetns", fn);
  napi_create_function(env, "connectTcp", NAPI_AUTO_LENGTH, connect_tcp, NULL, &fn);
  napi_set_named_property(env, exports, "connectTcp", fn);
}
