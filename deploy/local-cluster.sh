#!/usr/bin/env bash
# Starts a three-node Cairn cluster on this machine (gRPC on ports 7071-7073, HTTP, with
# health checks, /metrics and the status page, on 8071-8073; data in
# ./cairn-cluster/nodeN, logs in ./cairn-cluster/nodeN.log). Stop it with Ctrl-C.
#   deploy/local-cluster.sh [path/to/cairn]
set -euo pipefail
cairn=${1:-target/release/cairn}
[ -x "$cairn" ] || { echo "build first: cargo build --release (or pass the binary's path)"; exit 1; }
members="1=127.0.0.1:7071,2=127.0.0.1:7072,3=127.0.0.1:7073"
mkdir -p cairn-cluster
pids=()
for id in 1 2 3; do
  "$cairn" serve --node-id "$id" --data-dir "cairn-cluster/node$id" \
    --listen "127.0.0.1:707$id" --initial-cluster "$members" \
    > "cairn-cluster/node$id.out" 2> "cairn-cluster/node$id.log" &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
echo "cluster of 3 nodes: $members (node pids ${pids[*]}); status page: http://127.0.0.1:8071/; Ctrl-C stops it"
wait
