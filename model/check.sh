#!/usr/bin/env bash
# Model-checks ptrackd.pml with SPIN: the protocol must pass an exhaustive search in each of its
# configurations, and each mutation (one line of the model changed, so that one of the protocol's rules is
# broken) must produce a counterexample trail in the configuration that exercises it. Prints one line per
# run and ends with `N passed, N failed`; exits non-zero on any failure.
# Needs spin (Debian package `spin`) and a C compiler.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ptrackd-model-XXXXXX")"
trap 'rm -rf "$work"' EXIT
command -v spin >/dev/null || { echo "model: spin is not installed (apt-get install spin)" >&2; exit 69; }

# The model's configurations (CONFIG_LOG, see ptrackd.pml): name | value
configs=(
  "the protocol with the server's faults|0"
  "the protocol with the checkpoint log|1"
)

# name | the rule's line in ptrackd.pml | the same line, broken | the configuration that exercises it
mutations=(
  "flush position is the applied LSN|#define FLUSH_POSITION cat_ckpt|#define FLUSH_POSITION applied|0"
  "applied LSN moves before marking|#define MARK_BEFORE_APPLIED 1|#define MARK_BEFORE_APPLIED 0|0"
  "catalog record before the map file|#define MAP_FILE_BEFORE_CATALOG 1|#define MAP_FILE_BEFORE_CATALOG 0|0"
  "query answered without waiting|#define WAIT_FOR_SERVER 1|#define WAIT_FOR_SERVER 0|0"
  "dirty bit set before the entry rises|#define DIRTY_AFTER_RAISE 1|#define DIRTY_AFTER_RAISE 0|1"
  "log record counted before it is durable|#define LOG_BEFORE_CATALOG 1|#define LOG_BEFORE_CATALOG 0|1"
  "failed checkpoint forgets its lines|#define FAILED_KEEPS_LINES 1|#define FAILED_KEEPS_LINES 0|1"
)

passed=0 failed=0
# Runs pan on a copy of the model ($2) in $work/$1 with CONFIG_LOG=$3; prints pan's output.
verify() {
  local dir="$work/$1"
  mkdir -p "$dir" && cp "$2" "$dir/ptrackd.pml" && cd "$dir" || return 1
  spin -DCONFIG_LOG="$3" -a ptrackd.pml >/dev/null && "${CC:-cc}" -O2 -DSAFETY -DCOLLAPSE -o pan pan.c && ./pan -m100000
}

for c in "${configs[@]}"; do
  IFS='|' read -r name config <<<"$c"
  out="$(verify "config-$config" "$here/ptrackd.pml" "$config" 2>&1)"
  states="$(grep -oE '[0-9]+ states, stored' <<<"$out" | cut -d' ' -f1)"
  if grep -q 'errors: 0' <<<"$out" && ! grep -q 'max search depth too small' <<<"$out"; then
    echo "ok    ${name}: no assertion violated in any interleaving (${states} states, exhaustive)"
    passed=$((passed + 1))
  else
    echo "FAIL  ${name}:"; echo "$out" | sed 's/^/      /'
    failed=$((failed + 1))
  fi
done

for m in "${mutations[@]}"; do
  IFS='|' read -r name rule broken config <<<"$m"
  grep -qF "$rule" "$here/ptrackd.pml" || { echo "FAIL  mutation \"$name\": the line \"$rule\" is not in the model"; failed=$((failed + 1)); continue; }
  mutant="$work/mutant.pml"
  awk -v rule="$rule" -v broken="$broken" 'index($0, rule) == 1 { print broken substr($0, length(rule) + 1); next } { print }' "$here/ptrackd.pml" >"$mutant"
  slug="$(tr -c 'a-z' '-' <<<"$name")"
  out="$(verify "$slug" "$mutant" "$config" 2>&1)"
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
