{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": ["setns.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
