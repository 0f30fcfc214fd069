#!/usr/bin/env bash
# Sets up what is missing and runs eddy on the bank example with the embedded nats-server.
# Extra arguments replace the default ones: scripts/run.sh validate --config config/examples/inventory
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-nats.sh
if [ "$#" -eq 0 ]; then set -- run --config config/examples/bank; fi
# The first release build takes several minutes on a small machine: say so, and let cargo show its progress.
if [ ! -x "${CARGO_TARGET_DIR:-target}/release/eddy" ]; then
    echo "building eddy (release): the first build takes several minutes; later ones are quick" >&2
fi
cargo build --release --bin eddy
exec "${CARGO_TARGET_DIR:-target}/release/eddy" "$@"
