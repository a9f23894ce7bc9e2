#!/usr/bin/env bash
# Links the google/api protos (annotations.proto, http.proto, httpbody.proto) from a
# pinned Go module in the local module cache into third_party/googleapis, where buf.yaml
# expects them. The module is downloaded through the Go module proxy on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
module="github.com/grpc-ecosystem/grpc-gateway@v1.16.0"
dir=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir/third_party/googleapis/google/api" ] || { echo "googleapis.sh: $module has no third_party/googleapis" >&2; exit 1; }
mkdir -p third_party
ln -sfn "$dir/third_party/googleapis" third_party/googleapis
