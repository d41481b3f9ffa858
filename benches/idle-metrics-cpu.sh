#!/usr/bin/env bash
# CPU time of one idle node holding many partition replicas, over a window without any
# HTTP request, then over the same window with /metrics scraped every SCRAPE_INTERVAL
# seconds (and the same with --metrics-per-partition). Reads the process's utime+stime
# from /proc (10 ms resolution), not `ps -o cputime` (1 s).
#   benches/idle-metrics-cpu.sh [path/to/cairn]
# Environment: PARTITIONS (1000), WINDOW_SECONDS (60), SCRAPE_INTERVAL (1), PER_PARTITION
# (false).
set -euo pipefail
cairn=${1:-target/release/cairn}
partitions=${PARTITIONS:-1000}
window=${WINDOW_SECONDS:-60}
interval=${SCRAPE_INTERVAL:-1}
per_partition=${PER_PARTITION:-false}
dir=$(mktemp -d)
"$cairn" serve --data-dir "$dir/node" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --metrics-per-partition "$per_partition" > "$dir/out" 2> "$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until grep -qs 'listening on' "$dir/out"; do sleep 0.2; done
grpc=$(sed -n 's/.*listening on //p' "$dir/out")
http=$(sed -n 's/.*serving HTTP on //p' "$dir/out")
"$cairn" --server "$grpc" topic create idle --partitions "$partitions" > /dev/null
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/health/ready")" = 200 ]; do sleep 0.5; done
sleep 10 # let the start settle

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
measure() { # label, then a command run in the background during the window (or "")
  local before after
  before=$(ticks)
  if [ -n "$2" ]; then bash -c "$2" & local load=$!; fi
  sleep "$window"
  if [ -n "$2" ]; then kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true; fi
  after=$(ticks)
  awk -v t=$((after - before)) -v hz="$hz" -v w="$window" -v label="$1" \
    'BEGIN { printf "%-45s %6.2f s CPU in %d s (%.2f%% of one core)\n", label, t / hz, w, 100 * t / hz / w }'
}
scrape_bytes=$(curl -s "http://$http/metrics" | wc -c)
echo "node $pid: $partitions partitions, --metrics-per-partition $per_partition, /metrics is $scrape_bytes bytes"
measure "idle, no scrape" ""
measure "idle, /metrics every ${interval} s" "while true; do curl -s -o /dev/null http://$http/metrics; sleep $interval; done"
measure "idle, no scrape (again)" ""
