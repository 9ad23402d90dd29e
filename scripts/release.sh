#!/usr/bin/env bash
# Release build: static, reproducible binaries with the version stamped.
#
#   scripts/release.sh                 # dist/latchkey-VERSION-linux-{amd64,arm64} + SHA256SUMS
#   scripts/release.sh -o FILE         # one binary for this machine's platform (what the Dockerfile runs)
#
# VERSION, COMMIT and DATE default to `git describe`, the commit and its
# commit time (not the build time, so two builds of one commit are
# byte-identical); the Dockerfile passes them in since .git stays out of
# its context. -trimpath and -buildvcs=false keep paths and VCS state out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
COMMIT="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
DATE="${DATE:-$(git log -1 --format=%cI 2>/dev/null || echo unknown)}"
LDFLAGS="-s -w -buildid= -X main.version=$VERSION -X main.commit=$COMMIT -X main.date=$DATE"

build() { # build GOOS GOARCH OUT
  CGO_ENABLED=0 GOOS="$1" GOARCH="$2" go build -trimpath -buildvcs=false -ldflags "$LDFLAGS" -o "$3" ./cmd/latchkey
}

if [ "${1:-}" = "-o" ]; then
  build "$(go env GOOS)" "$(go env GOARCH)" "$2"
  exit 0
fi
mkdir -p dist
for arch in amd64 arm64; do
  build linux "$arch" "dist/latchkey-$VERSION-linux-$arch"
done
(cd dist && sha256sum latchkey-"$VERSION"-* > SHA256SUMS && cat SHA256SUMS)
