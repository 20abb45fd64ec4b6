// Giving freed memory back to the kernel, for berth's native addon (addon.c registers this).
//
// trimMemory(): malloc_trim(0), true when glibc released something. A daemon's native heap is
// busiest at start-up (V8 compiling the bundle, gRPC and HTTP/2 set-up, config parsing) and in
// bursts of calls; glibc keeps what was freed in its arenas for reuse, where it counts in the
// process's RSS until the next allocation needs it, which for an idle node agent is never.
#include <malloc.h>
#include <node_api.h>

#include "native.h"

static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

void register_memory(napi_env env, napi_value exports) {
  static const named_function functions[] = {{"trimMemory", trim_memory}};
  export_functions(env, exports, functions, sizeof functions / sizeof functions[0]);
}
