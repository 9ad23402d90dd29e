#!/usr/bin/env bash
# Runs Latchkey's whole test suite against the embedded store and a real
# PostgreSQL. Starts PostgreSQL when it is installed but stopped, installs it
# when missing; under CI=true a PostgreSQL that still cannot be reached fails
# the run (the tests refuse to skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

scripts/ensure-postgres.sh

# Browser tests drive Debian's Chromium (never a downloaded browser build).
if ! command -v chromium >/dev/null 2>&1; then
  echo "test.sh: installing chromium for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null || echo "test.sh: could not install chromium" >&2
fi

# The packaging test verifies the systemd unit with systemd-analyze.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "test.sh: installing systemd (for systemd-analyze) for the packaging test" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq systemd >/dev/null || echo "test.sh: could not install systemd" >&2
fi

# The OpenAPI document is linted with Redocly's CLI from npm (pinned),
# installed once into .tools/ (git-ignored).
if [ ! -x .tools/node_modules/.bin/redocly ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: installing Node.js and npm for the OpenAPI lint" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq nodejs npm >/dev/null || echo "test.sh: could not install npm" >&2
  fi
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --silent @redocly/cli@2.77.0 >/dev/null || echo "test.sh: could not install @redocly/cli" >&2
fi

# -p 2: the machines have two cores; the PostgreSQL-backed packages share one server.
# Screenshots of the main pages land in artifacts/screenshots/.
# -race: concurrency is part of the contract (one winner per code, one chain).
go test -race -count=1 -p 2 -timeout 30m "$@" ./...

# Every fuzz target then runs for a short fixed time (FUZZTIME, default 10s)
# from its seeds (f.Add and testdata/fuzz/). A failure writes the input to
# testdata/fuzz/ and fails the run. FUZZTIME=0 skips this step.
if [ "${FUZZTIME:-10s}" != 0 ]; then
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
    pkg=./$(dirname "${file#./}")
    for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
      echo "fuzz: $pkg $target (${FUZZTIME:-10s})"
      corpus="$pkg/testdata/fuzz/$target"
      before=$({ ls "$corpus" 2>/dev/null || true; } | wc -l)
      if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" "$pkg" 2>&1); then
        # Go 1.26's fuzz coordinator can report its own -fuzztime deadline
        # as a failure (golang/go#75804, fixed in 1.27): a run that wrote
        # no failing input and says only that is not a finding.
        if [ "$({ ls "$corpus" 2>/dev/null || true; } | wc -l)" = "$before" ] && echo "$out" | grep -q '^    context deadline exceeded$' \
          && ! echo "$out" | grep -q 'Failing input written'; then
          echo "fuzz: $target: coordinator deadline race (golang/go#75804), no failing input; not a failure"
          continue
        fi
        echo "$out"; exit 1
      fi
    done
  done
fi
