{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": ["setns.c", "storage.c", "nvml.c"],
      "libraries": ["-ldl"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
