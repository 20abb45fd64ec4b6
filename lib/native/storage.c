// berth's native addon, storage part: block volumes and quotas for the CSI driver.
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
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <node_api.h>
#include "native.h"

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

void register_storage(napi_env env, napi_value exports) {
  napi_value fn;
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
}
