// sd_notify(3) for berth's native addon (addon.c registers this function): Node has no unix
// datagram sockets, and systemd's notification socket is one.
//
// sdNotify(socketPath, state): one datagram with `state` (e.g. "READY=1", "WATCHDOG=1") to the
// socket systemd named in $NOTIFY_SOCKET; a leading '@' means the abstract namespace. Sent from
// this process itself, so the unit's NotifyAccess=main is enough. MSG_DONTWAIT: a full receive
// queue is an EAGAIN error, never a blocked event loop.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <node_api.h>

#include "native.h"

static napi_value sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char state[4096];
  if (argc < 2 || !get_string(env, argv[0], path, sizeof path) || !get_string(env, argv[1], state, sizeof state)) {
    napi_throw_type_error(env, NULL, "sdNotify(socketPath, state): two strings, the path shorter than 108 bytes and the state than 4096");
    return NULL;
  }
  size_t path_len = strlen(path);
  if (path_len == 0 || (path[0] != '/' && path[0] != '@')) {
    napi_throw_type_error(env, NULL, "sdNotify: the socket path must be absolute or start with @ (abstract)");
    return NULL;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    napi_throw(env, errno_error(env, errno, "socket(AF_UNIX, SOCK_DGRAM)", path));
    return NULL;
  }
  ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len);
  int err = errno;
  close(fd);
  if (sent < 0) {
    napi_throw(env, errno_error(env, err, "sendto", path));
    return NULL;
  }
  return NULL;
}

void register_notify(napi_env env, napi_value exports) {
  static const named_function functions[] = {{"sdNotify", sd_notify}};
  export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
