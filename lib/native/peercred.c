// Unix sockets for berth's native addon (addon.c registers these functions): who is at the other
// end of one, as the kernel knows it, and a connected pair of them.
//
// socketPair(): [fd, fd], a connected pair of unix stream sockets (close-on-exec), for a JS
// stream that must look like a socket to Node's native consumers (lib/grpc/h2-authority.ts).
//
// peerCredentials(fd): for a connected unix stream socket, { pid, uid, gid, procFd, pidfd }.
// pid, uid and gid are SO_PEERCRED: the peer's process and effective ids at connect(2), which the
// peer cannot choose. procFd is an open directory fd on /proc/<pid> of that same process (the
// caller reads the process's namespaces, cwd, root and status through /proc/self/fd/<procFd>/
// and closes it). A /proc/<pid> directory stays bound to the process it was opened for: once
// that process is gone, reads through it fail instead of showing whoever reuses the pid.
//
// What ties procFd to the connecting process is a pidfd: SO_PEERPIDFD (Linux 6.5) hands out one
// for the peer itself; older kernels fall back to pidfd_open(pid), which leaves the microseconds
// between getsockopt and pidfd_open open to the peer exiting and its pid being reused (pidfd is
// "SO_PEERPIDFD" or "pidfd_open" in the result, to say which). /proc/<pid> is opened after the
// pidfd, and the pidfd's process is then checked to be still running: a live process keeps its
// pid, so the directory opened in between is its own.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <node_api.h>

#include "native.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peerCredentials(fd): fd must be a non-negative integer");
    return NULL;
  }
  char what[64];
  snprintf(what, sizeof what, "socket fd %d", (int)fd);

  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    napi_throw(env, errno_error(env, errno, "getsockopt(SO_PEERCRED)", what));
    return NULL;
  }
  // 0: the peer's process has no pid in our pid namespace (an ancestor or sibling namespace).
  if (cred.pid <= 0) {
    napi_throw(env, errno_error(env, ESRCH, "getsockopt(SO_PEERCRED)", what));
    return NULL;
  }

  int pidfd = -1;
  const char *source = "SO_PEERPIDFD";
  len = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    if (errno != ENOPROTOOPT && errno != EINVAL) {
      napi_throw(env, errno_error(env, errno, "getsockopt(SO_PEERPIDFD)", what));
      return NULL;
    }
    source = "pidfd_open";
    pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
    if (pidfd < 0) {
      napi_throw(env, errno_error(env, errno, "pidfd_open", what));
      return NULL;
    }
  }

  char path[32];
  snprintf(path, sizeof path, "/proc/%d", (int)cred.pid);
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    int err = errno;
    close(pidfd);
    napi_throw(env, errno_error(env, err, "open", path));
    return NULL;
  }
  // A pidfd polls readable once its process has exited.
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  int exited;
  while ((exited = poll(&p, 1, 0)) < 0 && errno == EINTR) {
  }
  int err = errno;
  close(pidfd);
  if (exited != 0) {
    close(dir);
    napi_throw(env, errno_error(env, exited < 0 ? err : ESRCH, "poll(pidfd)", path));
    return NULL;
  }

  const struct {
    const char *name;
    int64_t value;
  } fields[] = {{"pid", cred.pid}, {"uid", cred.uid}, {"gid", cred.gid}, {"procFd", dir}};
  napi_value out, v;
  napi_create_object(env, &out);
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    napi_create_int64(env, fields[i].value, &v);
    napi_set_named_property(env, out, fields[i].name, v);
  }
  napi_create_string_utf8(env, source, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "pidfd", v);
  return out;
}

static napi_value socket_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    napi_throw(env, errno_error(env, errno, "socketpair", "AF_UNIX"));
    return NULL;
  }
  napi_value out, v;
  napi_create_array_with_length(env, 2, &out);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, fds[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

void register_peercred(napi_env env, napi_value exports) {
  static const named_function functions[] = {
      {"peerCredentials", peer_credentials},
      {"socketPair", socket_pair},
  };
  export_functions(env, exports, functions, sizeof functions / sizeof *functions);
}
