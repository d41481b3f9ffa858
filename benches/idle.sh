#!/usr/bin/env bash
# Idle cost of partitions: starts a 3-node cluster (release build), creates one topic of N
# partitions with replication factor 3, times the creation, lets it settle, then reports
# each node's CPU use over 20 idle seconds and its resident memory.
#   benches/idle.sh 10 100 1000
# CAIRN_BIN overrides the binary (default: the release build in CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
cairn="${CAIRN_BIN:-$target/release/cairn}"
[ -x "$cairn" ] || { echo "build it first: benches/README.md, 'Building release binaries'"; exit 1; }
settle_s=10
measure_s=20
ticks=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for partitions in "${@:-10 100 1000}"; do
  dir=$(mktemp -d)
  ports=($(free_port) $(free_port) $(free_port))
  initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
  pids=()
  for i in 1 2 3; do
    "$cairn" serve --node-id "$i" --data-dir "$dir/node$i" --listen "127.0.0.1:${ports[$((i - 1))]}" \
      --initial-cluster "$initial" > "$dir/node$i.log" 2>&1 &
    pids+=($!)
  done
  trap 'kill -9 "${pids[@]}" 2>/dev/null; rm -rf "$dir"' EXIT
  for port in "${ports[@]}"; do
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
  done
  started=$(date +%s.%N)
  "$cairn" --server "127.0.0.1:${ports[0]}" topic create idle --partitions "$partitions" --replication-factor 3 > /dev/null
  created=$(date +%s.%N)
  printf 'partitions %s (RF 3, 3 nodes): topic create %.1f s\n' "$partitions" "$(echo "$created - $started" | bc)"
  sleep "$settle_s"
  before=(); for pid in "${pids[@]}"; do before+=($(awk '{print $14 + $15}' "/proc/$pid/stat")); done
  sleep "$measure_s"
  for n in 0 1 2; do
    pid=${pids[$n]}
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    cpu=$(echo "scale=1; ($after - ${before[$n]}) * 100 / $ticks / $measure_s" | bc)
    rss=$(( $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") / 1024 ))
    echo "  node $((n + 1)): idle CPU ${cpu}% of one core, RSS ${rss} MB"
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
  trap - EXIT
done
