#!/usr/bin/env bash
# Throughput before and after scaling out: 3 nodes, a topic of 12 partitions (RF 3), a
# produce run; then nodes 4 and 5 join, automatic balancing moves replicas and leaders, and
# the same produce run again. All nodes share this one machine's cores.
#   benches/scale_out.sh [DURATION]   (default 20s)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
duration=${1:-20s}
start_cluster 3
server="127.0.0.1:${ports[0]}"
"$cairn" --server "$server" topic create load --partitions 12 --replication-factor 3 > /dev/null
wait_idle "$server"
produce() {
  "$cairn_bench" --server "$server" produce --topic load --record-size 1024 --batch 100 --in-flight 64 \
    --producers 4 --duration "$duration" --output json 2> /dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f records/s, p99 %.1f ms" % (r["records_per_sec"], r["latency_ms"]["p99"]))'
}
echo "3 nodes: $(produce)"
for id in 4 5; do
  start_node "$id" "$(free_port)" --join "$server"
done
started=$(date +%s.%N)
sleep 2
wait_idle "$server"
echo "balanced over 5 nodes in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
echo "5 nodes: $(produce)"
