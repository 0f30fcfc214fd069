#!/usr/bin/env bash
# Sets up what is missing and runs eddy on the bank example with the embedded nats-server.
# Extra arguments replace the default ones: scripts/run.sh validate --config config/examples/inventory
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-nats.sh
if [ "$#" -eq 0 ]; then set -- run --config config/examples/bank; fi
exec cargo run --release --quiet --bin eddy -- "$@"
