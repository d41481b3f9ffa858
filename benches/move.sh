#!/usr/bin/env bash
# Moving a big partition: 3 nodes, one partition (RF 3) filled with SIZE_MB (default 1024)
# of 64 KiB records, then a 4th node joins and one replica moves to it, unthrottled. Prints
# the move's duration and bytes per second. The log is purged every 1,000 entries, so the
# new replica catches up from a streamed snapshot, as any big partition would.
#   benches/move.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
size_mb=${1:-1024}
flags=(--auto-balance false --move-bytes-per-sec 0 --snapshot-log-entries 1000)
start_cluster 3 "${flags[@]}"
server="127.0.0.1:${ports[0]}"
"$cairn" --server "$server" topic create big --partitions 1 --replication-factor 3 > /dev/null
echo "filling big/0 with $size_mb MB ..."
python3 -c "
import sys
line = ('x' * 65535 + '\n').encode()
for _ in range($size_mb * 16):
    sys.stdout.buffer.write(line)
" | "$cairn" --server "$server" produce big > /dev/null
port4=$(free_port)
start_node 4 "$port4" --join "$server" "${flags[@]}"
until "$cairn" --server "$server" node list | grep -q "^4 "; do sleep 0.2; done
from=$("$cairn" --server "$server" topic describe big --output json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["replicas"][1])')
started=$(date +%s.%N)
"$cairn" --server "$server" partition move big/0 --from "$from" --to 4 --wait > /dev/null
finished=$(date +%s.%N)
bytes=$("$cairn" --server "$server" operation list --all --output json |
  python3 -c 'import json,sys; print(max(op["bytes_total"] for op in json.load(sys.stdin)))')
python3 -c "
seconds = $finished - $started
print(f'moved big/0 ({$bytes / 1e6:.0f} MB stored) from node $from to node 4 in {seconds:.1f} s: {$bytes / 1e6 / seconds:.0f} MB/s')
"
