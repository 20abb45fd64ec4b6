// The berth CNI plugin executable: dist/cni/berth-bridge, berth-loopback, berth-portmap, berth-overlay,
// berth-host-local, berth-bandwidth and berth-tuning are all this program; the plugin is the
// basename it was run as. It hands the call to berth-cnid over a unix socket (protocol:
// lib/cni/cnid-protocol.ts), which saves a Node start per call. When no daemon of the same build answers, it execs Node on the plugin's
// JS bundle (../cni-js/<name>.cjs next to this file) with the environment and stdin untouched,
// so the result is the same either way. berth-loopback's ADD and DEL are the exception: without
// a daemon, the shim does them itself when it can (cni-plugins/loopback/fast.c).
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../loopback/fast.h"

#ifndef BERTH_BUILD_ID
#define BERTH_BUILD_ID "source"
#endif
#define MAGIC "berth-cnid/1"
#define DEFAULT_SOCKET "/run/berth/cni.sock"
#define MAX_FRAME (16u << 20)
// How long to wait for the daemon's verdict before running standalone: covers a socket-activated
// daemon that is still starting, without hanging on one that never will.
#define VERDICT_TIMEOUT_MS 5000

// A marker a runtime can find in this file's bytes (lib/cni/berth-shim.ts): it tells berth's
// plugin executables from foreign ones and names the build, so berth-cri can hand a call to
// berth-cnid itself (or to the plugins in its own process) instead of starting this program.
__attribute__((used)) static const char shim_marker[] = "berth-cni-shim build=" BERTH_BUILD_ID;

extern char **environ;
static const char *plugin = "berth";

// The spec's error object on stdout (msg JSON-escaped), then exit 1.
static void fail(int code, const char *msg) {
  printf("{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"%s: ", code, plugin);
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p < 0x20) printf("\\u%04x", *p);
    else putchar(*p);
  }
  printf("\"}\n");
  fflush(stdout);
  exit(1);
}

// Run the plugin without the daemon: node <dir of this file>/../cni-js/<plugin>.cjs args...
// The node is $BERTH_NODE when set (the explicit override), else the runtime dist/ carries
// (<dir of this file>/../node/bin/node, the pinned one), else /usr/bin/node, else node in PATH.
static void try_fast_path(void);

static void run_standalone(int argc, char **argv) {
  if (argc == 1) try_fast_path();
  char self[PATH_MAX], bundle[PATH_MAX + 64], runtime[PATH_MAX + 64], msg[3 * PATH_MAX + 256];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) fail(999, "cannot read /proc/self/exe to find the plugin bundle");
  self[n] = '\0';
  *strrchr(self, '/') = '\0';
  snprintf(bundle, sizeof bundle, "%s/../cni-js/%s.cjs", self, plugin);
  if (access(bundle, R_OK) != 0) {
    snprintf(msg, sizeof msg, "cannot read the plugin bundle %s: %s", bundle, strerror(errno));
    fail(999, msg);
  }
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) fail(999, "out of memory");
  args[1] = bundle;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  const char *node = getenv("BERTH_NODE");
  if (node && *node) {
    args[0] = (char *)node;
    execvp(node, args);
    snprintf(msg, sizeof msg, "cannot run BERTH_NODE=%s on %s: %s", node, bundle, strerror(errno));
    fail(999, msg);
  }
  snprintf(runtime, sizeof runtime, "%s/../node/bin/node", self);
  args[0] = runtime;
  execv(runtime, args);
  int runtime_errno = errno;
  args[0] = "/usr/bin/node";
  execv(args[0], args);
  args[0] = "node";
  execvp("node", args);
  snprintf(msg, sizeof msg, "cannot run %s (%s), nor /usr/bin/node or node in PATH (%s), on %s; set BERTH_NODE to a node binary",
           runtime, strerror(runtime_errno), strerror(errno), bundle);
  fail(999, msg);
}

// send(MSG_NOSIGNAL) on the socket, so a dead daemon is EPIPE rather than a fatal SIGPIPE
// (an ignored SIGPIPE would be inherited by Node in the standalone path); write(2) elsewhere.
static int write_all(int fd, const void *buf, size_t len, int is_socket) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = is_socket ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static int write_frame(int fd, const char *data, uint32_t len) {
  unsigned char head[4] = {len >> 24, len >> 16, len >> 8, len};
  return write_all(fd, head, 4, 1) || write_all(fd, data, len, 1) ? -1 : 0;
}

// Read exactly len bytes; when timeout_ms >= 0, give up after that long without data.
static int read_all(int fd, void *buf, size_t len, int timeout_ms) {
  char *p = buf;
  while (len > 0) {
    if (timeout_ms >= 0) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      int r = poll(&pfd, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return -1;
    }
    ssize_t got = read(fd, p, len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    p += got;
    len -= (size_t)got;
  }
  return 0;
}

// One frame into a malloc'd, NUL-terminated buffer; NULL on EOF, error, timeout or oversize.
static char *read_frame(int fd, uint32_t *len, int timeout_ms) {
  unsigned char head[4];
  if (read_all(fd, head, 4, timeout_ms)) return NULL;
  *len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
  if (*len > MAX_FRAME) return NULL;
  char *buf = malloc(*len + 1);
  if (!buf) return NULL;
  if (read_all(fd, buf, *len, timeout_ms)) return free(buf), NULL;
  buf[*len] = '\0';
  return buf;
}

// The whole of stdin (the network configuration), at most 16 MiB.
static char *read_stdin(size_t *used) {
  size_t cap = 8192;
  char *input = malloc(cap);
  if (!input) fail(999, "out of memory reading stdin");
  *used = 0;
  for (;;) {
    if (*used == cap) {
      char *bigger = realloc(input, cap *= 2);
      if (!bigger) fail(999, "out of memory reading stdin");
      input = bigger;
    }
    ssize_t got = read(0, input + *used, cap - *used);
    if (got < 0 && errno == EINTR) continue;
    // Like the JS entry point, which reads an unreadable stdin as empty.
    if (got < 0) {
      *used = 0;
      break;
    }
    if (got == 0) break;
    *used += (size_t)got;
    if (*used > MAX_FRAME) fail(5, "network configuration on stdin is larger than 16 MiB");
  }
  return input;
}

// berth-loopback's ADD and DEL need no Node (cni-plugins/loopback/fast.c). What the C leaves
// to the TypeScript gets stdin back as it was, from a memfd holding the bytes already read.
static void try_fast_path(void) {
  const char *command = getenv("CNI_COMMAND");
  if (strcmp(plugin, "berth-loopback") != 0 || !command || (strcmp(command, "ADD") && strcmp(command, "DEL"))) return;
  size_t len;
  char *input = read_stdin(&len);
  if (loopback_fast(command, input, len) == 0) exit(0);
  int fd = memfd_create("berth-cni-stdin", MFD_CLOEXEC);
  if (fd < 0 || write_all(fd, input, len, 0) || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    fail(999, "cannot hand the network configuration on to the plugin's JavaScript (memfd)");
  }
  close(fd);
  free(input);
}

// HELLO: magic, build id, plugin, cwd, net and mount namespaces, euid, umask, environment. The
// daemon checks these against what the kernel says about this process (cni-plugins/cnid/peer.ts).
static char *hello(uint32_t *len) {
  char cwd[PATH_MAX] = "", netns[64] = "", mntns[64] = "", euid[16], mask[8];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
  if (readlink("/proc/self/ns/net", netns, sizeof netns - 1) < 0) netns[0] = '\0';
  if (readlink("/proc/self/ns/mnt", mntns, sizeof mntns - 1) < 0) mntns[0] = '\0';
  snprintf(euid, sizeof euid, "%u", (unsigned)geteuid());
  mode_t m = umask(0);
  umask(m);
  snprintf(mask, sizeof mask, "%o", (unsigned)m);
  const char *fixed[] = {MAGIC, BERTH_BUILD_ID, plugin, cwd, netns, mntns, euid, mask};
  size_t total = 0, nfixed = sizeof fixed / sizeof *fixed;
  for (size_t i = 0; i < nfixed; i++) total += strlen(fixed[i]) + 1;
  for (char **e = environ; *e; e++) total += strlen(*e) + 1;
  if (total > MAX_FRAME) return NULL;
  char *buf = malloc(total), *p = buf;
  if (!buf) return NULL;
  for (size_t i = 0; i < nfixed; i++) p = stpcpy(p, fixed[i]) + 1;
  for (char **e = environ; *e; e++) p = stpcpy(p, *e) + 1;
  *len = (uint32_t)(total - 1); // fields are separated, not terminated, by NUL
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 1) fail(999, "started without argv[0]; cannot tell which plugin to run");
  const char *slash = strrchr(argv[0], '/');
  plugin = slash ? slash + 1 : argv[0];
  // Arguments (--help) and calls without CNI_COMMAND are people, not runtimes: the JS answers.
  const char *command = getenv("CNI_COMMAND");
  if (argc > 1 || !command || !*command) run_standalone(argc, argv);

  const char *path = getenv("BERTH_CNI_SOCKET");
  if (!path || !*path) path = DEFAULT_SOCKET;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) run_standalone(argc, argv);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) run_standalone(argc, argv);

  // Until the daemon says "ok", stdin is untouched and running standalone is always possible.
  uint32_t len;
  char *msg = hello(&len);
  if (!msg || write_frame(fd, msg, len)) run_standalone(argc, argv);
  free(msg);
  char *verdict = read_frame(fd, &len, VERDICT_TIMEOUT_MS);
  if (!verdict || strcmp(verdict, "ok") != 0) {
    close(fd);
    run_standalone(argc, argv);
  }
  free(verdict);

  size_t used;
  char *input = read_stdin(&used);
  const char *gone = "berth-cnid stopped before answering; the operation may be half done, try again";
  if (write_frame(fd, input, (uint32_t)used)) fail(11, gone);

  // RESULT: exit code, stdout, stderr. No timeout: the runtime bounds the call, as it would
  // bound the standalone plugin.
  char *code = read_frame(fd, &len, -1), *out = NULL, *err = NULL;
  uint32_t out_len = 0, err_len = 0;
  if (!code || !(out = read_frame(fd, &out_len, -1)) || !(err = read_frame(fd, &err_len, -1))) fail(11, gone);
  char *end;
  long status = strtol(code, &end, 10);
  if (*code == '\0' || *end != '\0' || status < 0 || status > 255) fail(11, "berth-cnid sent an invalid exit code");
  if (write_all(2, err, err_len, 0) || write_all(1, out, out_len, 0)) return 1;
  return (int)status;
}
