#!/usr/bin/env bash
# Installs what the Unleash provider tests run against: PostgreSQL 15 (Debian) and
# unleash-server 7.5.1 (npm) under .unleash/. Idempotent and quiet; a no-op when both are there.
# Unleash 7.5.1 is the newest release that runs on Node 20 (7.6+ needs Node 22).
set -euo pipefail

UNLEASH_VERSION=7.5.1
PG_BIN=/usr/lib/postgresql/15/bin
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.unleash"

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$PG_BIN/initdb" ]; then
  echo "installing postgresql 15 (Debian package)"
  sudo_ apt-get update -qq
  # The tests run a private cluster; the packaged service is not needed.
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are needed for unleash-server (Node 20+): apt-get install -y nodejs npm" >&2
  exit 1
fi

installed="$(node -p "try { require('$PREFIX/node_modules/unleash-server/package.json').version } catch { '' }" 2>/dev/null || true)"
if [ "$installed" != "$UNLEASH_VERSION" ]; then
  echo "installing unleash-server@$UNLEASH_VERSION (npm) into .unleash/"
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --omit=dev \
    "unleash-server@$UNLEASH_VERSION" >/dev/null
fi
