// Network namespaces, for berth's native addon (addon.c registers these functions).
//
// withNetns(path, fn): enter the network namespace at `path` on the calling thread, call fn()
// synchronously, and always switch back, also when fn throws. Only the calling thread moves
// (setns acts per thread), so libuv's pool threads stay where they were.
//
// connectTcp(netnsPath, host, port, timeoutMs): a promise of a TCP connection made from inside
// a network namespace without waiting on any thread (CRI port-forward); see its definition.
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
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <node_api.h>
#include <uv.h>

#include "native.h"

// A failure to enter a namespace: errno_error plus a marker, which lets the JS side tell "could
// not enter" apart from errors thrown by withNetns's callback.
static napi_value netns_entry_error(napi_env env, int err, const char *what, const char *path) {
  napi_value error = errno_error(env, err, what, path), marker;
  napi_get_boolean(env, true, &marker);
  napi_set_named_property(env, error, "netnsEntry", marker);
  return error;
}

static void throw_errno(napi_env env, int err, const char *what, const char *path) {
  napi_throw(env, netns_entry_error(env, err, what, path));
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
  // O_NONBLOCK: a FIFO at `path` must not block the calling (event loop) thread; setns then
  // refuses it with EINVAL like any file that is no namespace.
  int target = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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

// connectTcp(netnsPath, host, port, timeoutMs): a promise of a TCP socket connected to a numeric
// IPv4/IPv6 address, as a non-blocking fd for net.Socket({ fd }). The socket is created inside
// the network namespace at netnsPath ("" for the caller's own): the JS thread enters it only for
// socket(2), which does not wait, and comes straight back; the socket stays bound to that
// namespace (a pod's localhost for CRI port-forward). The connect itself is non-blocking and its
// completion is watched by libuv on the event loop (uv_poll for writability, then SO_ERROR), so
// a port that drops SYNs costs neither the loop nor a threadpool thread; a uv_timer gives up at
// timeoutMs with ETIMEDOUT and closes the fd.
struct tcp_connect {
  napi_env env;
  napi_deferred deferred;
  napi_async_context async_context;
  napi_async_cleanup_hook_handle cleanup;
  uv_poll_t poll;
  uv_timer_t timer;
  int fd;
  int err;
  int open_handles;
  int finishing;
  // Set when the environment is torn down first (a worker exiting): JS can no longer be called.
  int env_gone;
  char target[INET6_ADDRSTRLEN + 8];
};

// socket(2) inside the network namespace at `path` ("" for our own); -1 with *err and *what set.
static int socket_in_netns(const char *path, int family, int *err, const char **what) {
  if (path[0] == '\0') {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) *err = errno, *what = "socket";
    return fd;
  }
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    *err = errno, *what = "open";
    return -1;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); // as in withNetns: never block on a FIFO
  if (target < 0) {
    *err = errno, *what = "open";
    close(home);
    return -1;
  }
  int entered = setns(target, CLONE_NEWNET);
  close(target);
  if (entered != 0) {
    *err = errno, *what = "setns";
    close(home);
    return -1;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int socket_err = errno;
  if (setns(home, CLONE_NEWNET) != 0) {
    napi_fatal_error("berth_native.connectTcp", NAPI_AUTO_LENGTH, "cannot return to the original network namespace", NAPI_AUTO_LENGTH);
  }
  close(home);
  if (fd < 0) *err = socket_err, *what = "socket";
  return fd;
}

static void connect_settle(struct tcp_connect *job) {
  napi_env env = job->env;
  napi_handle_scope handles;
  napi_open_handle_scope(env, &handles);
  // A callback scope, as for any completion coming from libuv: the promise's reactions (the
  // microtasks) run when it closes, not at some later, unrelated callback.
  napi_value resource;
  napi_create_object(env, &resource);
  napi_callback_scope scope;
  napi_open_callback_scope(env, resource, job->async_context, &scope);
  if (job->err == 0) {
    napi_value fd;
    napi_create_int32(env, job->fd, &fd);
    napi_resolve_deferred(env, job->deferred, fd);
  } else {
    napi_reject_deferred(env, job->deferred, errno_error(env, job->err, "connect", job->target));
  }
  napi_close_callback_scope(env, scope);
  napi_close_handle_scope(env, handles);
  napi_async_destroy(env, job->async_context);
}

static void connect_closed(uv_handle_t *handle) {
  struct tcp_connect *job = handle->data;
  if (--job->open_handles > 0) return;
  // The poll handle is closed, so libuv no longer watches the fd: now it may be closed, or
  // handed to a net.Socket that registers it afresh.
  if (job->err != 0 || job->env_gone) close(job->fd);
  if (!job->env_gone) connect_settle(job);
  napi_remove_async_cleanup_hook(job->cleanup);
  free(job);
}

static void connect_finish(struct tcp_connect *job, int err) {
  if (job->finishing) return;
  job->finishing = 1;
  job->err = err;
  uv_close((uv_handle_t *)&job->poll, connect_closed);
  uv_close((uv_handle_t *)&job->timer, connect_closed);
}

static void connect_writable(uv_poll_t *handle, int status, int events) {
  (void)events;
  struct tcp_connect *job = handle->data;
  int err = 0;
  socklen_t len = sizeof err;
  // libuv reports EPOLLERR (a refused connect) as status UV_EBADF: SO_ERROR says what it was.
  if (getsockopt(job->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0 && status < 0) err = -status;
  connect_finish(job, err);
}

static void connect_timeout(uv_timer_t *handle) {
  connect_finish(handle->data, ETIMEDOUT);
}

static void connect_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle;
  struct tcp_connect *job = arg;
  job->env_gone = 1;
  connect_finish(job, ECANCELED);
}

static napi_value connect_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_BUF], host[INET6_ADDRSTRLEN];
  uint32_t port = 0, timeout_ms = 0;
  size_t path_len = 0;
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok || path_len >= sizeof path - 1 ||
      !get_string(env, argv[1], host, sizeof host) || napi_get_value_uint32(env, argv[2], &port) != napi_ok || port == 0 || port > 65535 ||
      napi_get_value_uint32(env, argv[3], &timeout_ms) != napi_ok || timeout_ms == 0) {
    napi_throw_type_error(env, NULL, "connectTcp(netnsPath, host, port, timeoutMs): a path or \"\", a numeric address, a port 1-65535 and a timeout > 0");
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
  char target[sizeof ((struct tcp_connect *)0)->target];
  snprintf(target, sizeof target, addr.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);

  napi_deferred deferred;
  napi_value promise;
  napi_create_promise(env, &deferred, &promise);
  int err = 0;
  const char *what = NULL;
  int fd = socket_in_netns(path, addr.ss_family, &err, &what);
  if (fd < 0) {
    napi_reject_deferred(env, deferred, strcmp(what, "socket") == 0 ? errno_error(env, err, what, target) : netns_entry_error(env, err, what, path));
    return promise;
  }
  if (connect(fd, (struct sockaddr *)&addr, addr_len) == 0) {
    napi_value result;
    napi_create_int32(env, fd, &result);
    napi_resolve_deferred(env, deferred, result);
    return promise;
  }
  if (errno != EINPROGRESS) {
    err = errno;
    close(fd);
    napi_reject_deferred(env, deferred, errno_error(env, err, "connect", target));
    return promise;
  }

  // In progress (a loopback port answers at once; one that drops SYNs does not): watch it.
  struct uv_loop_s *loop = NULL;
  struct tcp_connect *job = calloc(1, sizeof *job);
  if (!job) err = ENOMEM;
  else if (napi_get_uv_event_loop(env, &loop) != napi_ok) err = EIO;
  else err = -uv_poll_init_socket(loop, &job->poll, fd);
  if (err != 0) {
    close(fd);
    free(job);
    napi_reject_deferred(env, deferred, errno_error(env, err, "connect", target));
    return promise;
  }
  job->env = env;
  job->deferred = deferred;
  job->fd = fd;
  job->open_handles = 2;
  memcpy(job->target, target, sizeof target);
  job->poll.data = job;
  job->timer.data = job;
  napi_value name;
  napi_create_string_utf8(env, "berth.connectTcp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &job->async_context);
  napi_add_async_cleanup_hook(env, connect_teardown, job, &job->cleanup);
  uv_timer_init(loop, &job->timer);
  uv_timer_start(&job->timer, connect_timeout, timeout_ms, 0);
  if ((err = uv_poll_start(&job->poll, UV_WRITABLE, connect_writable)) != 0) connect_finish(job, -err);
  return promise;
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
