#!/usr/bin/env bash
# Regenerate proto/gen/ (TypeScript, checked in; or the directory given) from proto/**/*.proto
# with ts-proto. Needs
# protoc (Debian: protobuf-compiler); the build and the tests do not, they use proto/gen as is.
#   int64 -> bigint (CRI timestamps are nanoseconds, past 2^53); message fields optional, as
#   proto3 gives them presence; services for @grpc/grpc-js; ESM imports with .js.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-proto/gen}
command -v protoc >/dev/null || { echo "gen-proto: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
options=outputServices=grpc-js,esModuleInterop=true,forceLong=bigint,useOptionals=messages,importSuffix=.js,env=node,useDate=false
for root in cri; do
  mapfile -t files < <(cd "proto/$root" && find . -name '*.proto' | sort)
  protoc --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
    --ts_proto_out="$out" --ts_proto_opt="$options" -I "proto/$root" "${files[@]/#.\//}"
done
echo "gen-proto: wrote $(find "$out" -name '*.ts' | wc -l) files under $out"
