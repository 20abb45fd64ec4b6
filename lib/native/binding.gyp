{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": ["setns.c", "storage.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
