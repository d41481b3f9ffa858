# Helpers for the benchmark scripts: the release binaries, free ports, nodes in the
# background (killed on exit). Source it: `. benches/lib.sh`.
target="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
cairn="${CAIRN_BIN:-$target/release/cairn}"
[ -x "$cairn" ] || { echo "build it first: benches/README.md, 'Building release binaries'"; exit 1; }
# The load generator; only scale_out.sh needs it.
cairn_bench="${CAIRN_BENCH_BIN:-$target/release/cairn-bench}"
pids=()
bench_dir=$(mktemp -d)
trap 'kill -9 "${pids[@]}" 2>/dev/null; rm -rf "$bench_dir"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_node ID PORT ARGS...: `cairn serve` in the background, logging to $bench_dir/nodeID.log;
# returns once it accepts connections.
start_node() {
  local id=$1 port=$2
  shift 2
  "$cairn" serve --node-id "$id" --data-dir "$bench_dir/node$id" --listen "127.0.0.1:$port" "$@" \
    > "$bench_dir/node$id.log" 2>&1 &
  pids+=($!)
  disown
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
}

# start_cluster N ARGS...: nodes 1..N formed with --initial-cluster; their ports in ${ports[@]}.
start_cluster() {
  local size=$1
  shift
  ports=()
  local initial=()
  for i in $(seq 1 "$size"); do
    ports+=($(free_port))
    initial+=("$i=127.0.0.1:${ports[$((i - 1))]}")
  done
  local spec
  spec=$(IFS=,; echo "${initial[*]}")
  for i in $(seq 1 "$size"); do
    start_node "$i" "${ports[$((i - 1))]}" --initial-cluster "$spec" "$@"
  done
}

# wait_idle SERVER: until no replica move runs and a rebalance would change nothing.
wait_idle() {
  until [ "$("$cairn" --server "$1" operation list --output json)" = "[]" ] &&
    "$cairn" --server "$1" rebalance --dry-run | grep -q balanced; do
    sleep 0.5
  done
}
