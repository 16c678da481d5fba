#!/usr/bin/env bash
# Model-checks ptrackd.pml with SPIN: the protocol must pass an exhaustive search, and each mutation (one
# line of the model changed, so that one of the protocol's rules is broken) must produce a counterexample
# trail. Prints one line per run and ends with `N passed, N failed`; exits non-zero on any failure.
# Needs spin (Debian package `spin`) and a C compiler.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ptrackd-model-XXXXXX")"
trap 'rm -rf "$work"' EXIT
command -v spin >/dev/null || { echo "model: spin is not installed (apt-get install spin)" >&2; exit 69; }

# name | the rule's line in ptrackd.pml | the same line, broken
mutations=(
  "flush position is the applied LSN|#define FLUSH_POSITION cat_ckpt|#define FLUSH_POSITION applied"
  "applied LSN moves before marking|#define MARK_BEFORE_APPLIED 1|#define MARK_BEFORE_APPLIED 0"
  "catalog record before the map file|#define MAP_FILE_BEFORE_CATALOG 1|#define MAP_FILE_BEFORE_CATALOG 0"
  "query answered without waiting|#define WAIT_FOR_SERVER 1|#define WAIT_FOR_SERVER 0"
)

passed=0 failed=0
# Runs pan on a copy of the model in $work/$1; prints pan's output.
verify() {
  local dir="$work/$1"
  mkdir -p "$dir" && cp "$2" "$dir/ptrackd.pml" && cd "$dir" || return 1
  spin -a ptrackd.pml >/dev/null && "${CC:-cc}" -O2 -DSAFETY -DCOLLAPSE -o pan pan.c && ./pan -m100000
}

out="$(verify model "$here/ptrackd.pml" 2>&1)"
states="$(grep -oE '[0-9]+ states, stored' <<<"$out" | cut -d' ' -f1)"
if grep -q 'errors: 0' <<<"$out" && ! grep -q 'max search depth too small' <<<"$out"; then
  echo "ok    the protocol: no assertion violated in any interleaving (${states} states, exhaustive)"
  passed=$((passed + 1))
else
  echo "FAIL  the protocol:"; echo "$out" | sed 's/^/      /'
  failed=$((failed + 1))
fi

for m in "${mutations[@]}"; do
  IFS='|' read -r name rule broken <<<"$m"
  grep -qF "$rule" "$here/ptrackd.pml" || { echo "FAIL  mutation \"$name\": the line \"$rule\" is not in the model"; failed=$((failed + 1)); continue; }
  mutant="$work/mutant.pml"
  awk -v rule="$rule" -v broken="$broken" 'index($0, rule) == 1 { print broken substr($0, length(rule) + 1); next } { print }' "$here/ptrackd.pml" >"$mutant"
  slug="$(tr -c 'a-z' '-' <<<"$name")"
  out="$(verify "$slug" "$mutant" 2>&1)"
  if grep -q 'assertion violated' <<<"$out" && [ -s "$work/$slug/ptrackd.pml.trail" ]; then
    what="$(grep -m1 -oE 'assertion violated .*' <<<"$out")"
    echo "ok    mutation \"$name\" is caught: $what"
    passed=$((passed + 1))
  else
    echo "FAIL  mutation \"$name\" produced no counterexample:"; echo "$out" | sed 's/^/      /'
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
