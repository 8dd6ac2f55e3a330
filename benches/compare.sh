#!/usr/bin/env bash
# Before/after in one run: builds REV in a temporary git worktree and the
# working tree, copies both binaries (and the working tree's generators) away,
# then runs each benchmark with REV's build and with the working tree's, one
# after the other, so both meet the same VM state. Edits made meanwhile do
# not change what is measured.
# Usage: sudo benches/compare.sh REV [RUNS] [BENCHES]
#   e.g. sudo benches/compare.sh 0f3ee38 3 "scan capture apply"
# Scan sizes come from SCAN_SIZES (default "100M 1G").
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: benches/compare.sh REV [RUNS] [BENCHES]}
runs=${2:-3}
benches=${3:-"scan capture apply"}
base=$(mktemp -d /tmp/fwctl-base.XXXXXX)
bins=$(mktemp -d /tmp/fwctl-bins.XXXXXX)
cleanup() { git worktree remove --force "$base" 2>/dev/null || rm -rf "$base"; rm -rf "$bins"; }
trap cleanup EXIT
git worktree add --quiet --detach "$base" "$rev"
(cd "$base" && cargo build --release --quiet --bin fwctl)
cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen --example pcapgen
mkdir -p "$bins/old" "$bins/new" "$bins/examples"
cp "$base/target/release/fwctl" "$bins/old/"
cp target/release/fwctl "$bins/new/"
cp target/release/examples/loggen target/release/examples/pcapgen "$bins/examples/"
old_label="before ($(git rev-parse --short "$rev"))"
new_label="after ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes'))"
for b in $benches; do
  args=("$runs")
  [ "$b" = scan ] && args+=("${SCAN_SIZES:-100M 1G}")
  for which in old new; do
    label=$old_label
    [ "$which" = new ] && label=$new_label
    echo "===== $b: $label"
    FWCTL_BIN=$bins/$which/fwctl FWCTL_EXAMPLES=$bins/examples "benches/$b.sh" "${args[@]}"
  done
done
