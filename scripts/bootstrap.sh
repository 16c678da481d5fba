# Sourced by the project's scripts: puts a Node.js >= 22 first on PATH.
# The machines ship Node 20 (end-of-life); when the system node is older than 22 this installs
# Node 24 from the npm registry (package node@24) into .tools/node, which git ignores.
PTRACKD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ptrackd_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(ptrackd_node_major)" -lt 22 ]; then
  tools="$PTRACKD_ROOT/.tools/node"
  if [ ! -x "$tools/node_modules/node/bin/node" ]; then
    echo "bootstrap: system node is $(node --version 2>/dev/null || echo missing); installing node@24 into .tools/node" >&2
    mkdir -p "$tools"
    # node's own install script puts the binary in place: the one package allowed to run one there
    echo '{ "private": true, "allowScripts": { "node": true } }' > "$tools/package.json"
    npm install --prefix "$tools" --no-save --no-package-lock --no-audit --no-fund node@24 >&2 \
      || { echo "bootstrap: npm install node@24 failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  export PATH="$tools/node_modules/node/bin:$PATH"
  if [ "$(ptrackd_node_major)" -lt 22 ]; then
    echo "bootstrap: could not put Node >= 22 on PATH" >&2
    return 1 2>/dev/null || exit 1
  fi
fi

# Install the project's packages when node_modules is missing or older than the lock file.
if [ ! -d "$PTRACKD_ROOT/node_modules" ] || [ "$PTRACKD_ROOT/package-lock.json" -nt "$PTRACKD_ROOT/node_modules/.package-lock.json" ]; then
  (cd "$PTRACKD_ROOT" && npm ci --no-audit --no-fund >&2) || { echo "bootstrap: npm ci failed" >&2; return 1 2>/dev/null || exit 1; }
fi
