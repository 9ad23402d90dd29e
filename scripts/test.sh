#!/usr/bin/env bash
# Runs Latchkey's whole test suite against the embedded store and a real
# PostgreSQL. Starts PostgreSQL when it is installed but stopped, installs it
# when missing; under CI=true a PostgreSQL that still cannot be reached fails
# the run (the tests refuse to skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

scripts/ensure-postgres.sh

# -p 2: the machines have two cores; the PostgreSQL-backed packages share one server.
go test -count=1 -p 2 -timeout 30m "$@" ./...
