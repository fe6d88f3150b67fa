#!/usr/bin/env bash
# Builds the web console (web/, npm with its lockfile) into
# internal/webui/dist, which the daemon embeds. npm ci runs only when
# web/package-lock.json is newer than the installed node_modules.
set -euo pipefail
cd "$(dirname "$0")/../web"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "webui: $tool is missing: the web console is built with node and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
done
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
