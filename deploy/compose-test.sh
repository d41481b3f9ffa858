#!/usr/bin/env bash
# The Docker deployment end to end: builds the image FROM scratch out of a cairn binary,
# starts deploy/compose.yaml (three nodes), produces with the cairn CLI, `docker kill`s the
# leader of partition 0, keeps producing, starts the killed node again, produces through
# it, and checks that every record is consumed exactly once, from every node.
#   deploy/compose-test.sh [path/to/cairn]      (default: target/release/cairn)
# Needs a Docker engine and docker-compose (1.29) or `docker compose`; says SKIP and exits
# 0 without them. Uses host ports 7071-7073 and 8071-8073.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/cairn}

if ! docker info >/dev/null 2>&1; then
  echo "SKIP deploy/compose-test.sh: no Docker engine reachable (docker info failed)"
  exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "SKIP deploy/compose-test.sh: neither docker-compose nor docker compose is installed"
  exit 0
fi
export CAIRN_IMAGE=cairn:compose-test
compose+=(-p cairn-compose-test -f deploy/compose.yaml)
records_per_round=300

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    for node in 1 2 3; do echo "--- last log lines of cairn$node ---"; docker logs --tail 20 "cairn$node" 2>&1 || true; done
  fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT

deploy/docker/build-image.sh "$binary" "$CAIRN_IMAGE"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
"${compose[@]}" up -d

# Polls `$2...` until it succeeds, for at most $1 seconds.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out after ${seconds}s waiting for: $*"; return 1; fi
    sleep 0.5
  done
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:807$1/health/ready")" = 200 ]; }
# The cairn CLI inside node $1's container, talking to that node.
cli() { local node=$1; shift; docker exec -i "cairn$node" /cairn --server 127.0.0.1:7070 "$@"; }
produce() { # node, first value, last value
  seq "$2" "$3" | cli "$1" produce events >/dev/null
  echo "produced $2..$3 through node $1"
}
# Node $1 serves exactly the values 1..$2, each once.
serves_all() {
  local values
  values=$(cli "$1" consume events --output json | python3 -c '
import json, sys
values = [int(json.loads(line)["value"]) for line in sys.stdin if line.strip()]
print(len(values), len(set(values)), min(values, default=0), max(values, default=0))')
  [ "$values" = "$2 $2 1 $2" ]
}

for node in 1 2 3; do wait_for 120 ready "$node"; done
echo "cluster ready"
cli 1 topic create events --partitions 3 --replication-factor 3
produce 1 1 "$records_per_round"

leader=$(cli 1 topic describe events --output json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["partitions"][0]["leader"])')
other=$(( leader % 3 + 1 ))
echo "partition 0 is led by node $leader: docker kill cairn$leader"
docker kill "cairn$leader" >/dev/null
produce "$other" $((records_per_round + 1)) $((2 * records_per_round))

echo "docker start cairn$leader"
docker start "cairn$leader" >/dev/null
wait_for 120 ready "$leader"
produce "$leader" $((2 * records_per_round + 1)) $((3 * records_per_round))

total=$((3 * records_per_round))
for node in 1 2 3; do
  wait_for 60 serves_all "$node" "$total"
  echo "node $node serves all $total records, each once"
done
curl -sf "http://127.0.0.1:807$leader/metrics" | grep -q '^cairn_raft_leader_changes_total' 
echo "compose test passed"
