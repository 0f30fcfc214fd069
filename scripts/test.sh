#!/usr/bin/env bash
# Sets up what is missing and runs the whole test suite (unit, integration against a real nats-server,
# config snapshots).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-nats.sh
# The console test drives headless Chromium (Debian's package).
if ! command -v chromium >/dev/null; then
    echo "installing chromium for the console test (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
export EDDY_NATS_SERVER="$root/.tools/venv/bin/nats-server"
cargo test --workspace --all-targets "$@"
