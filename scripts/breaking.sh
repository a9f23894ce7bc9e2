#!/usr/bin/env bash
# Checks proto/ for breaking changes (buf FILE rules) against the main branch. The
# baseline is built from a temporary worktree of main, with the same googleapis link,
# because buf cannot read the untracked third_party/ link through a .git input.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BREAKING_AGAINST:-main}
git rev-parse --verify -q "$base" >/dev/null || { echo "breaking: no $base branch; skipped"; exit 0; }
git cat-file -e "$base:buf.yaml" 2>/dev/null || { echo "breaking: $base has no protos yet; skipped"; exit 0; }
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/main" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/main" "$base"
mkdir -p "$tmp/main/third_party"
ln -sfn "$(readlink -f third_party/googleapis)" "$tmp/main/third_party/googleapis"
buf breaking --against "$tmp/main"
echo "breaking: no breaking changes against $base"
