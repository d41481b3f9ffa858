#!/usr/bin/env bash
# The event store under load: a 3-node cluster (release build), a topic of 8 partitions
# with replication factor 3, then `cairn-bench streams`: STREAMS streams x 10 events, each
# appended at its exact expected revision, the same count of plain appends to compare,
# ReadStream of random streams under appends, and each node's resident memory.
#   benches/streams.sh 20000        # the issue's size: 1000000
#   EVENTS_PER_APPEND=10 COMPARE=0 benches/streams.sh 1000000   # fill each stream in one append
#   NODE_ARGS="--write-buffer-bytes 16777216" benches/streams.sh 20000   # node settings
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
[ -x "$cairn_bench" ] || { echo "build it first: benches/README.md, 'Building release binaries'"; exit 1; }
streams="${1:-20000}"
# shellcheck disable=SC2086 # NODE_ARGS: extra `cairn serve` flags, split on spaces
start_cluster 3 ${NODE_ARGS:-}
sleep 2
"$cairn_bench" --server "127.0.0.1:${ports[0]}" streams --topic s --partitions 8 --replication-factor 3 \
  --streams "$streams" --events-per-stream 10 --events-per-append "${EVENTS_PER_APPEND:-1}" --writers 64 \
  $([ "${COMPARE:-1}" = 1 ] && echo --compare) --readers 4 --read-duration 20s --read-phase-writers 64,4 \
  --server-pids "$(IFS=,; echo "${pids[*]}")"
