#!/usr/bin/env bash
# Builds the Cairn image FROM scratch out of a binary built on this machine.
#   deploy/docker/build-image.sh [path/to/cairn] [image tag]
# Defaults: target/release/cairn, cairn:latest. A debug binary works too (CI uses the one
# its test build made). The context holds the binary, every shared library `ldd` lists for
# it (at the same paths) and /bin/sh with its libraries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary=${1:-target/release/cairn}
tag=${2:-cairn:latest}
[ -x "$binary" ] || { echo "no cairn binary at $binary: cargo build --release (or pass its path)"; exit 1; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/bin" "$context/rootfs/data" "$context/rootfs/tmp"
cp "$binary" "$context/rootfs/cairn"
shell=$(readlink -f /bin/sh)
cp "$shell" "$context/rootfs/bin/sh"
# Each library a binary needs, at the path the dynamic loader will look for it.
for file in "$binary" "$shell"; do
  ldd "$file" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }'
done | sort -u | while read -r library; do
  mkdir -p "$context/rootfs$(dirname "$library")"
  cp -L "$library" "$context/rootfs$library"
done
cp "$here/Dockerfile" "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context"
echo "built $tag from $binary"
