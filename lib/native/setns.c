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
// Block volumes for the CSI driver (ioctls on loop devices, no losetup spawn):
// loopAttach(file, readOnly, directIo): attach `file` to a free loop device with LOOP_CONFIGURE
// and return its path (/dev/loopN). The device stays attached until loopDetach.
// loopAttachAndMount(file, readOnly, directIo, target, fstype, flags, data): the same with
// autoclear, mounted at `target` while our fd still holds the device, so the mount keeps it and
// the last unmount detaches it. A failed mount detaches it again.
// loopDetach(device): LOOP_CLR_FD; a device that is not attached is fine.
// loopSetCapacity(device): LOOP_SET_CAPACITY, after the backing file grew.
// blockDeviceSize(device): BLKGETSIZE64, in bytes.
//
// Project quotas (ext4 made with -O quota,project, or XFS, mounted with -o prjquota):
// setProjectId(dir, id) / getProjectId(path): the inode's project id (FS_IOC_FS[GS]ETXATTR);
// setProjectId also sets PROJINHERIT, so what is created below inherits the id.
// quotaSetProject(device, id, bytes, inodes) / quotaGetProject(device, id): the project's hard
// limits (0 = none) and usage through quotactl(2) on the filesystem's block device.
// syncfs(path): flush the filesystem holding `path` (before a snapshot copies a volume).
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
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <node_api.h>

#define PATH_BUF 4096

// Build an Error with .code = "ENOENT"-style name, .errno, .syscall and .path, like Node's fs errors.
static napi_value errno_error(napi_env env, int err, const char *what, const char *path) {
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
static int get_string(napi_env env, napi_value v, char *buf, size_t size) {
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

// ---- Loop devices, project quotas, syncfs ----

// A JS number that must be a whole number in [0, max]: ids, sizes and limits.
static int get_whole(napi_env env, napi_value v, double max, uint64_t *out) {
  double d = -1;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= max) || d != (double)(uint64_t)d) return 0;
  *out = (uint64_t)d;
  return 1;
}

static int get_bool(napi_env env, napi_value v, int *out) {
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return 0;
  *out = b;
  return 1;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

// open(path) for an ioctl; throws and returns -1 on failure.
static int open_or_throw(napi_env env, const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) napi_throw(env, errno_error(env, errno, "open", path));
  return fd;
}

// ioctl(fd, request, arg), named `what` in the error; throws and returns -1 on failure.
static int ioctl_or_throw(napi_env env, int fd, unsigned long request, void *arg, const char *what, const char *path) {
  if (ioctl(fd, request, arg) == 0) return 0;
  napi_throw(env, errno_error(env, errno, what, path));
  return -1;
}

#define LOOP_MAJOR 7
// How often to ask loop-control for another free device when a racing process took ours.
#define LOOP_ATTEMPTS 16
#define LOOP_PATH_BUF 64

struct loop_request {
  const char *file;
  int read_only, autoclear, direct_io;
};

// Open /dev/loopN, first making the node when /dev is a minimal one (a container's) without it.
// The numbers come from sysfs when it is there, as loop.max_part spreads the minors out.
static int open_loop_node(int n, int flags, char *path, size_t size) {
  snprintf(path, size, "/dev/loop%d", n);
  int fd = open(path, flags | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) return fd;
  unsigned int major = LOOP_MAJOR, minor = (unsigned int)n;
  char sys[64];
  snprintf(sys, sizeof sys, "/sys/block/loop%d/dev", n);
  FILE *f = fopen(sys, "re");
  if (f) {
    if (fscanf(f, "%u:%u", &major, &minor) != 2) major = LOOP_MAJOR, minor = (unsigned int)n;
    fclose(f);
  }
  // EEXIST: a concurrent attach made the same node first.
  if (mknod(path, S_IFBLK | 0660, makedev(major, minor)) != 0 && errno != EEXIST) return -1;
  return open(path, flags | O_CLOEXEC);
}

// The backing file, opened O_DIRECT when direct I/O is asked (as losetup does) so the kernel
// can use it from the start; a filesystem that refuses O_DIRECT gets buffered I/O instead.
static int open_backing_file(const struct loop_request *req) {
  int flags = (req->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (req->direct_io) {
    int fd = open(req->file, flags | O_DIRECT);
    if (fd >= 0 || errno != EINVAL) return fd;
  }
  return open(req->file, flags);
}

static void loop_config_for(struct loop_config *config, int file_fd, const struct loop_request *req) {
  memset(config, 0, sizeof *config);
  config->fd = (uint32_t)file_fd;
  config->info.lo_flags = (req->read_only ? LO_FLAGS_READ_ONLY : 0) | (req->autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
                          (req->direct_io ? LO_FLAGS_DIRECT_IO : 0);
  // Only informational (LOOP_GET_STATUS64); sysfs shows the kernel's own, untruncated path.
  size_t len = strlen(req->file);
  if (len > LO_NAME_SIZE - 1) len = LO_NAME_SIZE - 1;
  memcpy(config->info.lo_file_name, req->file, len);
}

// Configure a free loop device over `file_fd`. Returns the device's fd with its path in
// `device`, or -1 with errno set, *what naming the failed call and `device` its subject.
static int configure_free_loop(int file_fd, const struct loop_request *req, char *device, size_t size, const char **what) {
  struct loop_config config;
  loop_config_for(&config, file_fd, req);
  snprintf(device, size, "/dev/loop-control");
  *what = "open";
  int control = open(device, O_RDWR | O_CLOEXEC);
  if (control < 0) return -1;
  int fd = -1;
  // LOOP_CTL_GET_FREE only names a free device: another process may configure it before we
  // do (EBUSY), and then we ask for the next one.
  for (int attempt = 0; attempt < LOOP_ATTEMPTS; attempt++) {
    int n = ioctl(control, LOOP_CTL_GET_FREE);
    if (n < 0) {
      *what = "ioctl(LOOP_CTL_GET_FREE)";
      break;
    }
    fd = open_loop_node(n, req->read_only ? O_RDONLY : O_RDWR, device, size);
    if (fd < 0) {
      *what = "open";
      break;
    }
    if (ioctl(fd, LOOP_CONFIGURE, &config) == 0) break;
    int err = errno;
    close(fd);
    fd = -1;
    errno = err;
    *what = "ioctl(LOOP_CONFIGURE)";
    if (err != EBUSY) break;
  }
  int err = errno;
  close(control);
  errno = err;
  return fd;
}

// Attach req->file to a free loop device: its fd (the caller closes it) with its path in
// `device`, or -1 with an exception pending.
static int attach_loop(napi_env env, const struct loop_request *req, char *device, size_t size) {
  int file_fd = open_backing_file(req);
  if (file_fd < 0) {
    napi_throw(env, errno_error(env, errno, "open", req->file));
    return -1;
  }
  const char *what = "open";
  int fd = configure_free_loop(file_fd, req, device, size, &what);
  int err = errno;
  // The loop device holds its own reference to the backing file.
  close(file_fd);
  if (fd < 0) napi_throw(env, errno_error(env, err, what, device));
  return fd;
}

static napi_value loop_attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char file[PATH_BUF];
  struct loop_request req = {file, 0, 0, 0};
  if (argc < 3 || !get_string(env, argv[0], file, sizeof file) || file[0] == 0 || !get_bool(env, argv[1], &req.read_only) ||
      !get_bool(env, argv[2], &req.direct_io)) {
    napi_throw_type_error(env, NULL, "loopAttach(file, readOnly, directIo): a non-empty path and two booleans");
    return NULL;
  }
  char device[LOOP_PATH_BUF];
  int fd = attach_loop(env, &req, device, sizeof device);
  if (fd < 0) return NULL;
  close(fd);
  return make_string(env, device);
}

static napi_value loop_attach_and_mount(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char file[PATH_BUF], target[PATH_BUF], fstype[64], data[PATH_BUF];
  struct loop_request req = {file, 0, 1, 0};
  uint32_t flags = 0;
  if (argc < 7 || !get_string(env, argv[0], file, sizeof file) || file[0] == 0 || !get_bool(env, argv[1], &req.read_only) ||
      !get_bool(env, argv[2], &req.direct_io) || !get_string(env, argv[3], target, sizeof target) || target[0] == 0 ||
      !get_string(env, argv[4], fstype, sizeof fstype) || fstype[0] == 0 || napi_get_value_uint32(env, argv[5], &flags) != napi_ok ||
      !get_string(env, argv[6], data, sizeof data)) {
    napi_throw_type_error(env, NULL,
                          "loopAttachAndMount(file, readOnly, directIo, target, fstype, flags, data): non-empty file, target and "
                          "fstype, booleans, integer flags and a data string");
    return NULL;
  }
  char device[LOOP_PATH_BUF];
  int fd = attach_loop(env, &req, device, sizeof device);
  if (fd < 0) return NULL;
  // A read-only loop device cannot be opened for writing, so only a read-only mount can use it.
  unsigned long mount_flags = (unsigned long)flags | (req.read_only ? MS_RDONLY : 0);
  if (mount(device, target, fstype, mount_flags, data[0] ? data : NULL) != 0) {
    int err = errno;
    ioctl(fd, LOOP_CLR_FD, 0);
    close(fd);
    napi_throw(env, errno_error(env, err, "mount", target));
    return NULL;
  }
  // The mount now holds the device; autoclear detaches it when the last unmount lets go.
  close(fd);
  return make_string(env, device);
}

// The single path argument of loopDetach, loopSetCapacity, blockDeviceSize, getProjectId and syncfs.
static int path_argument(napi_env env, napi_callback_info info, char *path, size_t size, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !get_string(env, argv[0], path, size) || path[0] == 0) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

static napi_value loop_detach(napi_env env, napi_callback_info info) {
  char device[PATH_BUF];
  if (!path_argument(env, info, device, sizeof device, "loopDetach(device): a non-empty device path")) return NULL;
  int fd = open_or_throw(env, device, O_RDONLY);
  if (fd < 0) return NULL;
  // ENXIO: nothing attached, already the state we want. A device still open elsewhere (mounted)
  // is not refused: the kernel turns on autoclear and detaches it at its last close.
  if (ioctl(fd, LOOP_CLR_FD, 0) != 0 && errno != ENXIO) napi_throw(env, errno_error(env, errno, "ioctl(LOOP_CLR_FD)", device));
  close(fd);
  return NULL;
}

static napi_value loop_set_capacity(napi_env env, napi_callback_info info) {
  char device[PATH_BUF];
  if (!path_argument(env, info, device, sizeof device, "loopSetCapacity(device): a non-empty device path")) return NULL;
  int fd = open_or_throw(env, device, O_RDONLY);
  if (fd < 0) return NULL;
  ioctl_or_throw(env, fd, LOOP_SET_CAPACITY, NULL, "ioctl(LOOP_SET_CAPACITY)", device);
  close(fd);
  return NULL;
}

static napi_value block_device_size(napi_env env, napi_callback_info info) {
  char device[PATH_BUF];
  if (!path_argument(env, info, device, sizeof device, "blockDeviceSize(device): a non-empty device path")) return NULL;
  int fd = open_or_throw(env, device, O_RDONLY);
  if (fd < 0) return NULL;
  uint64_t size = 0;
  int rc = ioctl_or_throw(env, fd, BLKGETSIZE64, &size, "ioctl(BLKGETSIZE64)", device);
  close(fd);
  if (rc != 0) return NULL;
  napi_value result;
  // Exact up to 8 PiB (2^53 bytes).
  napi_create_double(env, (double)size, &result);
  return result;
}

static napi_value set_project_id(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[PATH_BUF];
  uint64_t id = 0;
  if (argc < 2 || !get_string(env, argv[0], dir, sizeof dir) || dir[0] == 0 || !get_whole(env, argv[1], UINT32_MAX, &id)) {
    napi_throw_type_error(env, NULL, "setProjectId(dir, projectId): a non-empty path and an id 0-4294967295");
    return NULL;
  }
  int fd = open_or_throw(env, dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return NULL;
  struct fsxattr attr;
  if (ioctl_or_throw(env, fd, FS_IOC_FSGETXATTR, &attr, "ioctl(FS_IOC_FSGETXATTR)", dir) == 0) {
    attr.fsx_projid = (uint32_t)id;
    // Files and directories created below take the id too, so the quota covers the whole tree.
    // What already exists keeps its own id: callers tag a volume's directory while it is empty.
    attr.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    ioctl_or_throw(env, fd, FS_IOC_FSSETXATTR, &attr, "ioctl(FS_IOC_FSSETXATTR)", dir);
  }
  close(fd);
  return NULL;
}

static napi_value get_project_id(napi_env env, napi_callback_info info) {
  char path[PATH_BUF];
  if (!path_argument(env, info, path, sizeof path, "getProjectId(path): a non-empty path")) return NULL;
  int fd = open_or_throw(env, path, O_RDONLY);
  if (fd < 0) return NULL;
  struct fsxattr attr;
  int rc = ioctl_or_throw(env, fd, FS_IOC_FSGETXATTR, &attr, "ioctl(FS_IOC_FSGETXATTR)", path);
  close(fd);
  if (rc != 0) return NULL;
  napi_value result;
  napi_create_uint32(env, attr.fsx_projid, &result);
  return result;
}

// The (device, projectId) pair both quota calls start with.
static int quota_arguments(napi_env env, napi_value *argv, char *device, size_t size, uint64_t *id) {
  return get_string(env, argv[0], device, size) && device[0] != 0 && get_whole(env, argv[1], UINT32_MAX, id);
}

// 2^53: the largest byte count a JS number holds exactly.
#define JS_SAFE_MAX 9007199254740992.0

static napi_value quota_set_project(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char device[PATH_BUF];
  uint64_t id = 0, bytes = 0, inodes = 0;
  if (argc < 4 || !quota_arguments(env, argv, device, sizeof device, &id) || !get_whole(env, argv[2], JS_SAFE_MAX, &bytes) ||
      !get_whole(env, argv[3], JS_SAFE_MAX, &inodes)) {
    napi_throw_type_error(env, NULL, "quotaSetProject(device, projectId, blockHardLimitBytes, inodeHardLimit): a device path and whole numbers");
    return NULL;
  }
  struct if_dqblk quota;
  memset(&quota, 0, sizeof quota);
  // quotactl counts space in 1 KiB blocks; rounding up keeps a small limit from becoming 0 (none).
  quota.dqb_bhardlimit = (bytes + QIF_DQBLKSIZE - 1) / QIF_DQBLKSIZE;
  // Soft limits equal to the hard ones: ext4 and XFS report a set soft limit as the size of a
  // project directory in statfs, so df inside the volume shows its real capacity.
  quota.dqb_bsoftlimit = quota.dqb_bhardlimit;
  quota.dqb_ihardlimit = quota.dqb_isoftlimit = inodes;
  quota.dqb_valid = QIF_LIMITS;
  if (quotactl(QCMD(Q_SETQUOTA, PRJQUOTA), device, (int)id, (caddr_t)&quota) != 0) {
    napi_throw(env, errno_error(env, errno, "quotactl(Q_SETQUOTA)", device));
  }
  return NULL;
}

static void set_number(napi_env env, napi_value object, const char *name, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, object, name, v);
}

static napi_value quota_get_project(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char device[PATH_BUF];
  uint64_t id = 0;
  if (argc < 2 || !quota_arguments(env, argv, device, sizeof device, &id)) {
    napi_throw_type_error(env, NULL, "quotaGetProject(device, projectId): a device path and an id 0-4294967295");
    return NULL;
  }
  struct if_dqblk quota;
  memset(&quota, 0, sizeof quota);
  if (quotactl(QCMD(Q_GETQUOTA, PRJQUOTA), device, (int)id, (caddr_t)&quota) != 0) {
    napi_throw(env, errno_error(env, errno, "quotactl(Q_GETQUOTA)", device));
    return NULL;
  }
  napi_value result;
  napi_create_object(env, &result);
  set_number(env, result, "spaceBytes", (double)quota.dqb_curspace);
  set_number(env, result, "inodes", (double)quota.dqb_curinodes);
  set_number(env, result, "blockHardLimitBytes", (double)quota.dqb_bhardlimit * QIF_DQBLKSIZE);
  set_number(env, result, "inodeHardLimit", (double)quota.dqb_ihardlimit);
  return result;
}

static napi_value do_syncfs(napi_env env, napi_callback_info info) {
  char path[PATH_BUF];
  if (!path_argument(env, info, path, sizeof path, "syncfs(path): a non-empty path")) return NULL;
  int fd = open_or_throw(env, path, O_RDONLY);
  if (fd < 0) return NULL;
  if (syncfs(fd) != 0) napi_throw(env, errno_error(env, errno, "syncfs", path));
  close(fd);
  return NULL;
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
  napi_create_function(env, "loopAttach", NAPI_AUTO_LENGTH, loop_attach, NULL, &fn);
  napi_set_named_property(env, exports, "loopAttach", fn);
  napi_create_function(env, "loopAttachAndMount", NAPI_AUTO_LENGTH, loop_attach_and_mount, NULL, &fn);
  napi_set_named_property(env, exports, "loopAttachAndMount", fn);
  napi_create_function(env, "loopDetach", NAPI_AUTO_LENGTH, loop_detach, NULL, &fn);
  napi_set_named_property(env, exports, "loopDetach", fn);
  napi_create_function(env, "loopSetCapacity", NAPI_AUTO_LENGTH, loop_set_capacity, NULL, &fn);
  napi_set_named_property(env, exports, "loopSetCapacity", fn);
  napi_create_function(env, "blockDeviceSize", NAPI_AUTO_LENGTH, block_device_size, NULL, &fn);
  napi_set_named_property(env, exports, "blockDeviceSize", fn);
  napi_create_function(env, "setProjectId", NAPI_AUTO_LENGTH, set_project_id, NULL, &fn);
  napi_set_named_property(env, exports, "setProjectId", fn);
  napi_create_function(env, "getProjectId", NAPI_AUTO_LENGTH, get_project_id, NULL, &fn);
  napi_set_named_property(env, exports, "getProjectId", fn);
  napi_create_function(env, "quotaSetProject", NAPI_AUTO_LENGTH, quota_set_project, NULL, &fn);
  napi_set_named_property(env, exports, "quotaSetProject", fn);
  napi_create_function(env, "quotaGetProject", NAPI_AUTO_LENGTH, quota_get_project, NULL, &fn);
  napi_set_named_property(env, exports, "quotaGetProject", fn);
  napi_create_function(env, "syncfs", NAPI_AUTO_LENGTH, do_syncfs, NULL, &fn);
  napi_set_named_property(env, exports, "syncfs", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
