// berth's native addon, NVML part: the GPU backend of berth-gpu over libnvidia-ml, loaded at run
// time with dlopen so that the addon builds and loads on hosts without the NVIDIA driver. No
// NVIDIA header is used: the few types and entry points below are declared here, as NVML's
// nvml.h declares them (the ABI is stable across driver releases for the _v2/_v3 names).
//
// nvmlOpen(libraryPath): dlopen + dlsym of every entry point + nvmlInit_v2. Reference counted:
//   every successful nvmlOpen is matched by one nvmlClose; a second library path is refused.
// nvmlDevices(): [{index, uuid, name, memoryMiB, pciBusId}] for every device NVML sees.
// nvmlProbe(uuid): whether the device answers (its handle and memory info can be read).
// nvmlWatchEvents(callback): Xid and ECC events of every device, from a thread that waits on an
//   NVML event set, delivered to callback(uuid, kind, code) on the JS thread.
// nvmlStopEvents(): stop that thread and free the event set.
// nvmlClose(): the matching close; the last one stops events, calls nvmlShutdown and dlcloses.
//
// NVML is one per process, so all state is static. Every export runs on the JS thread; only the
// event thread runs elsewhere, and it touches nothing but the event set, NVML and the tsfn.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>
#include "native.h"

// ---- NVML's ABI, as far as we use it ----

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlEventSet_st *nvmlEventSet_t;

typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;

// nvmlPciInfo_t as nvmlDeviceGetPciInfo_v3 fills it.
typedef struct {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

typedef struct {
  nvmlDevice_t device;
  unsigned long long eventType;
  unsigned long long eventData;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlEventData_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_TIMEOUT 10
#define NVML_EVENT_SINGLE_BIT_ECC 0x1ULL
#define NVML_EVENT_DOUBLE_BIT_ECC 0x2ULL
#define NVML_EVENT_XID 0x8ULL
// NVML_DEVICE_UUID_V2_BUFFER_SIZE and NVML_DEVICE_NAME_V2_BUFFER_SIZE are 96.
#define NVML_STRING_BUF 96
// How long one nvmlEventSetWait_v2 blocks: the longest nvmlStopEvents waits for the thread.
#define EVENT_WAIT_MS 1000

static struct {
  nvmlReturn_t (*init)(void);
  nvmlReturn_t (*shutdown)(void);
  nvmlReturn_t (*get_count)(unsigned int *);
  nvmlReturn_t (*get_handle_by_index)(unsigned int, nvmlDevice_t *);
  nvmlReturn_t (*get_uuid)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_name)(nvmlDevice_t, char *, unsigned int);
  nvmlReturn_t (*get_memory_info)(nvmlDevice_t, nvmlMemory_t *);
  nvmlReturn_t (*get_pci_info)(nvmlDevice_t, nvmlPciInfo_t *);
  nvmlReturn_t (*get_handle_by_uuid)(const char *, nvmlDevice_t *);
  nvmlReturn_t (*event_set_create)(nvmlEventSet_t *);
  nvmlReturn_t (*register_events)(nvmlDevice_t, unsigned long long, nvmlEventSet_t);
  nvmlReturn_t (*event_set_wait)(nvmlEventSet_t, nvmlEventData_t *, unsigned int);
  nvmlReturn_t (*event_set_free)(nvmlEventSet_t);
  const char *(*error_string)(nvmlReturn_t);
} nvml;

static void *library;
static char library_path[PATH_BUF];
static unsigned int open_count;

// The event thread's state; `watching` says whether the rest is live.
static int watching;
static pthread_t event_thread;
static atomic_int stop_events;
static nvmlEventSet_t event_set;
static napi_threadsafe_function event_tsfn;

// One event on its way from the event thread to JS.
struct nvml_event {
  char uuid[NVML_STRING_BUF];
  const char *kind;
  unsigned long long code;
};

// ---- Errors ----

// Throw an Error with .code "NVML_ERROR_<n>": "<what>: <nvmlErrorString> (NVML error <n>)".
static void throw_nvml(napi_env env, const char *what, nvmlReturn_t ret) {
  char code[32], msg[PATH_BUF + 256];
  const char *why = nvml.error_string ? nvml.error_string(ret) : NULL;
  snprintf(code, sizeof code, "NVML_ERROR_%d", ret);
  snprintf(msg, sizeof msg, "%s: %s (NVML error %d)", what, why ? why : "unknown error", ret);
  napi_throw_error(env, code, msg);
}

static int require_open(napi_env env) {
  if (library) return 1;
  napi_throw_error(env, NULL, "NVML is not open (call nvmlOpen first)");
  return 0;
}

static void set_string(napi_env env, napi_value object, const char *name, const char *value) {
  napi_value v;
  napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, object, name, v);
}

static void set_number(napi_env env, napi_value object, const char *name, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, object, name, v);
}

// ---- Open and close ----

static void unload(void) {
  dlclose(library);
  library = NULL;
  memset(&nvml, 0, sizeof nvml);
}

static napi_value missing_symbol(napi_env env, const char *path, const char *symbol) {
  char msg[PATH_BUF + 128];
  snprintf(msg, sizeof msg, "%s has no symbol %s (a driver too old for this NVML ABI?)", path, symbol);
  unload();
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value nvml_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[PATH_BUF];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !get_string(env, argv[0], path, sizeof path) || path[0] == 0) {
    napi_throw_type_error(env, NULL, "nvmlOpen(libraryPath: string)");
    return NULL;
  }
  if (library) {
    if (strcmp(path, library_path) != 0) {
      char msg[2 * PATH_BUF + 64];
      snprintf(msg, sizeof msg, "NVML is already open from %s, not %s", library_path, path);
      napi_throw_error(env, NULL, msg);
      return NULL;
    }
    open_count++;
    return NULL;
  }
  dlerror();
  library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    // dlerror names the path: "libnvidia-ml.so.1: cannot open shared object file: ...".
    const char *why = dlerror();
    napi_throw_error(env, NULL, why ? why : path);
    return NULL;
  }
  // memcpy: a dlsym result is a void *, and the fields are function pointers.
#define LOAD(field, symbol)                                                                          \
  do {                                                                                               \
    void *sym = dlsym(library, symbol);                                                              \
    if (!sym) return missing_symbol(env, path, symbol);                                              \
    memcpy(&nvml.field, &sym, sizeof sym);                                                           \
  } while (0)
  LOAD(init, "nvmlInit_v2");
  LOAD(shutdown, "nvmlShutdown");
  LOAD(get_count, "nvmlDeviceGetCount_v2");
  LOAD(get_handle_by_index, "nvmlDeviceGetHandleByIndex_v2");
  LOAD(get_uuid, "nvmlDeviceGetUUID");
  LOAD(get_name, "nvmlDeviceGetName");
  LOAD(get_memory_info, "nvmlDeviceGetMemoryInfo");
  LOAD(get_pci_info, "nvmlDeviceGetPciInfo_v3");
  LOAD(get_handle_by_uuid, "nvmlDeviceGetHandleByUUID");
  LOAD(event_set_create, "nvmlEventSetCreate");
  LOAD(register_events, "nvmlDeviceRegisterEvents");
  LOAD(event_set_wait, "nvmlEventSetWait_v2");
  LOAD(event_set_free, "nvmlEventSetFree");
  LOAD(error_string, "nvmlErrorString");
#undef LOAD
  nvmlReturn_t ret = nvml.init();
  if (ret != NVML_SUCCESS) {
    char what[PATH_BUF + 32];
    snprintf(what, sizeof what, "%s: nvmlInit_v2 failed", path);
    throw_nvml(env, what, ret);
    unload();
    return NULL;
  }
  snprintf(library_path, sizeof library_path, "%s", path);
  open_count = 1;
  return NULL;
}

static void stop_watching(napi_env env);

static napi_value nvml_close(napi_env env, napi_callback_info info) {
  (void)info;
  if (!library || --open_count > 0) return NULL;
  stop_watching(env);
  nvml.shutdown();
  unload();
  return NULL;
}

// ---- Devices ----

static napi_value nvml_devices(napi_env env, napi_callback_info info) {
  (void)info;
  if (!require_open(env)) return NULL;
  unsigned int count = 0;
  nvmlReturn_t ret = nvml.get_count(&count);
  if (ret != NVML_SUCCESS) {
    throw_nvml(env, "nvmlDeviceGetCount_v2", ret);
    return NULL;
  }
  napi_value list;
  napi_create_array_with_length(env, count, &list);
  for (unsigned int i = 0; i < count; i++) {
    nvmlDevice_t device;
    char uuid[NVML_STRING_BUF] = "", name[NVML_STRING_BUF] = "", what[64];
    nvmlMemory_t memory;
    nvmlPciInfo_t pci;
    memset(&pci, 0, sizeof pci);
    const char *call = "nvmlDeviceGetHandleByIndex_v2";
    if ((ret = nvml.get_handle_by_index(i, &device)) == NVML_SUCCESS) {
      call = "nvmlDeviceGetUUID";
      if ((ret = nvml.get_uuid(device, uuid, sizeof uuid)) == NVML_SUCCESS) {
        call = "nvmlDeviceGetName";
        if ((ret = nvml.get_name(device, name, sizeof name)) == NVML_SUCCESS) {
          call = "nvmlDeviceGetMemoryInfo";
          if ((ret = nvml.get_memory_info(device, &memory)) == NVML_SUCCESS) {
            call = "nvmlDeviceGetPciInfo_v3";
            ret = nvml.get_pci_info(device, &pci);
          }
        }
      }
    }
    if (ret != NVML_SUCCESS) {
      snprintf(what, sizeof what, "%s (device %u)", call, i);
      throw_nvml(env, what, ret);
      return NULL;
    }
    uuid[sizeof uuid - 1] = name[sizeof name - 1] = pci.busId[sizeof pci.busId - 1] = 0;
    napi_value gpu;
    napi_create_object(env, &gpu);
    set_number(env, gpu, "index", i);
    set_string(env, gpu, "uuid", uuid);
    set_string(env, gpu, "name", name);
    set_number(env, gpu, "memoryMiB", (double)(memory.total / (1024 * 1024)));
    set_string(env, gpu, "pciBusId", pci.busId);
    napi_set_element(env, list, i, gpu);
  }
  return list;
}

static napi_value nvml_probe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  char uuid[NVML_STRING_BUF];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !get_string(env, argv[0], uuid, sizeof uuid)) {
    napi_throw_type_error(env, NULL, "nvmlProbe(uuid: string)");
    return NULL;
  }
  if (!require_open(env)) return NULL;
  nvmlDevice_t device;
  nvmlMemory_t memory;
  int ok = nvml.get_handle_by_uuid(uuid, &device) == NVML_SUCCESS && nvml.get_memory_info(device, &memory) == NVML_SUCCESS;
  napi_get_boolean(env, ok, &result);
  return result;
}

// ---- Events ----

// On the JS thread: callback(uuid, kind, code). env is NULL when the tsfn is being torn down.
static void call_js_event(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  struct nvml_event *event = data;
  if (env && callback) {
    napi_value argv[3], undefined;
    napi_create_string_utf8(env, event->uuid, NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_string_utf8(env, event->kind, NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_double(env, (double)event->code, &argv[2]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, callback, 3, argv, NULL);
  }
  free(event);
}

// Queue one event for JS; an event with several bits set is one call per kind.
static void deliver(const nvmlEventData_t *data, unsigned long long bit, const char *kind) {
  if (!(data->eventType & bit)) return;
  struct nvml_event *event = calloc(1, sizeof *event);
  if (!event) return;
  if (nvml.get_uuid(data->device, event->uuid, sizeof event->uuid) != NVML_SUCCESS) {
    free(event);
    return;
  }
  event->uuid[sizeof event->uuid - 1] = 0;
  event->kind = kind;
  event->code = data->eventData;
  // Nonblocking on an unbounded queue: never waits, so nvmlStopEvents can join us safely.
  if (napi_call_threadsafe_function(event_tsfn, event, napi_tsfn_nonblocking) != napi_ok) free(event);
}

static void *event_loop(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_events)) {
    nvmlEventData_t data;
    memset(&data, 0, sizeof data);
    nvmlReturn_t ret = nvml.event_set_wait(event_set, &data, EVENT_WAIT_MS);
    if (ret == NVML_ERROR_TIMEOUT) continue;
    if (ret != NVML_SUCCESS) {
      // A lost GPU or a driver error: keep trying, without spinning.
      for (int i = 0; i < 10 && !atomic_load(&stop_events); i++) usleep(100 * 1000);
      continue;
    }
    deliver(&data, NVML_EVENT_XID, "xid");
    deliver(&data, NVML_EVENT_DOUBLE_BIT_ECC, "ecc-double-bit");
    deliver(&data, NVML_EVENT_SINGLE_BIT_ECC, "ecc-single-bit");
  }
  return NULL;
}

// Flag the thread, join it (at most one EVENT_WAIT_MS) and free the event set; the caller
// releases the tsfn, which may already be gone at environment teardown.
static void stop_event_thread(void) {
  atomic_store(&stop_events, 1);
  pthread_join(event_thread, NULL);
  nvml.event_set_free(event_set);
  event_set = NULL;
  watching = 0;
}

// Environment teardown (the process exits without nvmlStopEvents): the thread must be gone before
// Node deletes the tsfn. Registered after the tsfn is created, so it runs before its cleanup.
static void event_cleanup_hook(void *arg) {
  (void)arg;
  if (watching) stop_event_thread();
  event_tsfn = NULL;
}

// Register what `device` supports of Xid, double- and single-bit ECC events.
static nvmlReturn_t register_device(nvmlDevice_t device) {
  static const unsigned long long kinds[] = {NVML_EVENT_XID, NVML_EVENT_DOUBLE_BIT_ECC, NVML_EVENT_SINGLE_BIT_ECC};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    nvmlReturn_t ret = nvml.register_events(device, kinds[k], event_set);
    if (ret != NVML_SUCCESS && ret != NVML_ERROR_NOT_SUPPORTED) return ret;
  }
  return NVML_SUCCESS;
}

static napi_value nvml_watch_events(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_valuetype type = napi_undefined;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "nvmlWatchEvents(callback: function)");
    return NULL;
  }
  if (!require_open(env)) return NULL;
  if (watching) {
    napi_throw_error(env, NULL, "NVML events are already being watched (call nvmlStopEvents first)");
    return NULL;
  }
  nvmlReturn_t ret = nvml.event_set_create(&event_set);
  if (ret != NVML_SUCCESS) {
    throw_nvml(env, "nvmlEventSetCreate", ret);
    return NULL;
  }
  unsigned int count = 0;
  ret = nvml.get_count(&count);
  const char *call = "nvmlDeviceGetCount_v2";
  for (unsigned int i = 0; ret == NVML_SUCCESS && i < count; i++) {
    nvmlDevice_t device;
    call = "nvmlDeviceGetHandleByIndex_v2";
    if ((ret = nvml.get_handle_by_index(i, &device)) != NVML_SUCCESS) break;
    call = "nvmlDeviceRegisterEvents";
    ret = register_device(device);
  }
  if (ret != NVML_SUCCESS) {
    nvml.event_set_free(event_set);
    event_set = NULL;
    throw_nvml(env, call, ret);
    return NULL;
  }
  napi_create_string_utf8(env, "berth-nvml-events", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js_event, &event_tsfn) != napi_ok) {
    nvml.event_set_free(event_set);
    event_set = NULL;
    napi_throw_error(env, NULL, "nvmlWatchEvents: cannot create a threadsafe function");
    return NULL;
  }
  // The thread alone must not keep the process alive.
  napi_unref_threadsafe_function(env, event_tsfn);
  atomic_store(&stop_events, 0);
  int err = pthread_create(&event_thread, NULL, event_loop, NULL);
  if (err != 0) {
    napi_release_threadsafe_function(event_tsfn, napi_tsfn_release);
    event_tsfn = NULL;
    nvml.event_set_free(event_set);
    event_set = NULL;
    napi_throw(env, errno_error(env, err, "pthread_create", "nvml events"));
    return NULL;
  }
  watching = 1;
  napi_add_env_cleanup_hook(env, event_cleanup_hook, NULL);
  return NULL;
}

// The JS side of stopping: no cleanup hook is needed any more, and the tsfn is ours to release.
static void stop_watching(napi_env env) {
  if (!watching) return;
  napi_remove_env_cleanup_hook(env, event_cleanup_hook, NULL);
  stop_event_thread();
  napi_release_threadsafe_function(event_tsfn, napi_tsfn_release);
  event_tsfn = NULL;
}

static napi_value nvml_stop_events(napi_env env, napi_callback_info info) {
  (void)info;
  stop_watching(env);
  return NULL;
}

void register_nvml(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"nvmlOpen", nvml_open},       {"nvmlDevices", nvml_devices},         {"nvmlProbe", nvml_probe},
      {"nvmlWatchEvents", nvml_watch_events}, {"nvmlStopEvents", nvml_stop_events}, {"nvmlClose", nvml_close},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
}
