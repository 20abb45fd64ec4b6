{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": [
        "addon.c", "setns.c", "fs.c", "storage.c", "nvml.c",
        "peercred.c", "paths.c", "notify.c", "memory.c", "idmap.c", "mountattr.c"
      ],
      "libraries": ["-ldl"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
