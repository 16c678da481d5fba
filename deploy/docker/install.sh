#!/usr/bin/env bash
# The production install, shared by the Dockerfile and test/deploy/image.test.ts:
# ptrackd's sources and its runtime dependencies only (no dev tools, no build step), into $2.
set -euo pipefail
src="$1"
dest="$2"
mkdir -p "$dest"
cp -r "$src/package.json" "$src/package-lock.json" "$src/bin" "$src/src" "$src/workers" "$src/schemas" "$dest/"
cd "$dest"
# better-sqlite3 ships its binary for Node >= 22 inside the package: no install scripts, no compiler.
npm ci --omit=dev --ignore-scripts --no-audit --no-fund
