#!/usr/bin/env bash
# Regenerate proto/gen/ (TypeScript, checked in; or the directory given) from proto/**/*.proto
# with ts-proto. Needs
# protoc (Debian: protobuf-compiler); the build and the tests do not, they use proto/gen as is.
#   int64 -> bigint (CRI timestamps are nanoseconds, past 2^53); message fields optional, as
#   proto3 gives them presence; services for @grpc/grpc-js; ESM imports with .js.
# Each tree is compiled with its own include root, so the output keeps the import paths:
#   proto/cri        -> proto/gen/runtime/v1/api.ts
#   proto/containerd -> proto/gen/github.com/containerd/containerd/api/**.ts (containerd imports
#     its files as "github.com/containerd/containerd/api/..."), plus proto/gen/google/rpc/status.ts
#     from proto/google and proto/gen/google/protobuf/*.ts for the well-known types it uses.
#   proto/csi        -> proto/gen/csi.ts (upstream's file is csi.proto at the root), plus the
#     well-known types it imports (descriptor, timestamp, wrappers) under proto/gen/google/protobuf.
#   proto/kubelet    -> proto/gen/kubelet/deviceplugin/v1beta1/api.ts and
#     proto/gen/kubelet/pluginregistration/v1/api.ts (no imports; written under a kubelet/
#     subdirectory so the two api.ts and their bare package names stay apart from the rest).
# A well-known type used by two trees is generated twice, to the same bytes.
# The well-known types (google/protobuf/*.proto) are not copied into proto/: they are the ones
# shipped with protoc (Debian: /usr/include); set PROTOC_INCLUDE to use another directory.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-proto/gen}
command -v protoc >/dev/null || { echo "gen-proto: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
wkt=${PROTOC_INCLUDE:-$(dirname "$(readlink -f "$(command -v protoc)")")/../include}
[[ -f $wkt/google/protobuf/any.proto ]] || { echo "gen-proto: no google/protobuf/*.proto under $wkt (set PROTOC_INCLUDE)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
options=outputServices=grpc-js,esModuleInterop=true,forceLong=bigint,useOptionals=messages,importSuffix=.js,env=node,useDate=false
gen() { # gen [--out <subdir of $out>] <include dir>... -- <file>...
  local includes=() dest=$out
  if [[ $1 == --out ]]; then dest=$out/$2; shift 2; mkdir -p "$dest"; fi
  while [[ $1 != -- ]]; do includes+=(-I "$1"); shift; done
  shift
  protoc --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
    --ts_proto_out="$dest" --ts_proto_opt="$options" "${includes[@]}" -I "$wkt" "$@"
}
protos() { (cd "$1" && find "${@:2}" -name '*.proto' | sort); }
mapfile -t files < <(protos proto/cri .)
gen proto/cri -- "${files[@]/#.\//}"
mapfile -t files < <(protos proto/containerd . ; protos proto google/rpc)
gen proto/containerd proto -- "${files[@]/#.\//}"
mapfile -t files < <(protos proto/csi .)
gen proto/csi -- "${files[@]/#.\//}"
mapfile -t files < <(protos proto/kubelet .)
gen --out kubelet proto/kubelet -- "${files[@]/#.\//}"
echo "gen-proto: wrote $(find "$out" -name '*.ts' | wc -l) files under $out"
