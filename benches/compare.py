#!/usr/bin/env python3
"""Cairn vs NATS JetStream, side by side on one machine, interleaved.

Every run starts a fresh cluster (3 nodes or 1) of one system, runs one workload against
it with its load generator (`cairn-bench` or `nats-bench`, which share their measuring
code), and stops it. Rows alternate A, B, A, B over the rounds; the table shows medians
and the Cairn/NATS ratios. Run through benches/compare.sh, which builds and installs
what this needs. Environment: ROUNDS (3), DURATION (10s), BACKLOG_MB (1024), ROWS (a
comma-separated subset of the row names), WORKDIR (a temporary directory).
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))
CAIRN_BENCH = os.environ.get("CAIRN_BENCH_BIN", os.path.join(ROOT, "target", "release", "cairn-bench"))
NATS_BENCH = os.environ.get("NATS_BENCH_BIN", os.path.join(ROOT, "target", "release", "nats-bench"))
NATS_SERVER = os.environ.get("NATS_SERVER_BIN", shutil.which("nats-server") or "nats-server")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
BACKLOG_MB = int(os.environ.get("BACKLOG_MB", "1024"))
PARTITIONS = 8


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Cluster:
    """Processes of one system; stopped (SIGKILL) and their data removed on exit."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(dir=workdir)
        self.processes = []
        self.address = None

    def spawn(self, args, log_name):
        log = open(os.path.join(self.dir, log_name), "w")
        self.processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class CairnCluster(Cluster):
    name = "cairn"

    def start(self, nodes):
        ports = free_ports(nodes)
        initial = ",".join(f"{i + 1}=127.0.0.1:{port}" for i, port in enumerate(ports))
        for i, port in enumerate(ports):
            args = [CAIRN, "serve", "--node-id", str(i + 1), "--data-dir", f"node{i + 1}",
                    "--listen", f"127.0.0.1:{port}"]
            if nodes > 1:
                args += ["--initial-cluster", initial]
            self.spawn(args, f"node{i + 1}.log")
        for port in ports:
            wait_port(port)
        self.address = f"127.0.0.1:{ports[0]}"
        self.replicas = nodes
        return self

    def produce(self, record_size, in_flight, producers, duration, rate=None):
        args = [CAIRN_BENCH, "--server", self.address, "produce", "--topic", "bench",
                "--partitions", str(PARTITIONS), "--replication-factor", str(self.replicas),
                "--record-size", str(record_size), "--batch", "1", "--in-flight", str(in_flight),
                "--producers", str(producers), "--duration", duration, "--output", "json"]
        if rate:
            args += ["--rate", str(rate)]
        return run_json(args)

    def consume(self):
        return run_json([CAIRN_BENCH, "--server", self.address, "consume", "--topic", "bench",
                         "--output", "json"])


class NatsCluster(Cluster):
    name = "nats"

    def start(self, nodes, sync_always=False):
        ports = free_ports(2 * nodes)
        client_ports, route_ports = ports[:nodes], ports[nodes:]
        for i in range(nodes):
            store = os.path.join(self.dir, f"store{i + 1}")
            sync = ', sync_interval: "always"' if sync_always else ""
            config = [f"server_name: n{i + 1}", f"listen: 127.0.0.1:{client_ports[i]}",
                      f'jetstream {{ store_dir: "{store}"{sync} }}']
            if nodes > 1:
                routes = ", ".join(f'"nats://127.0.0.1:{p}"' for j, p in enumerate(route_ports) if j != i)
                config.append(f"cluster {{ name: bench, listen: 127.0.0.1:{route_ports[i]}, routes: [{routes}] }}")
            path = os.path.join(self.dir, f"n{i + 1}.conf")
            with open(path, "w") as f:
                f.write("\n".join(config) + "\n")
            self.spawn([NATS_SERVER, "-c", path], f"n{i + 1}.log")
        for port in client_ports:
            wait_port(port)
        self.address = f"127.0.0.1:{client_ports[0]}"
        self.replicas = nodes
        return self

    def produce(self, record_size, in_flight, producers, duration, rate=None):
        args = [NATS_BENCH, "produce", "--server", self.address, "--stream", "bench",
                "--replicas", str(self.replicas), "--subjects", str(PARTITIONS),
                "--record-size", str(record_size), "--in-flight", str(in_flight),
                "--producers", str(producers), "--duration", duration, "--output", "json"]
        if rate:
            args += ["--rate", str(rate)]
        return run_json(args)

    def consume(self):
        return run_json([NATS_BENCH, "consume", "--server", self.address, "--stream", "bench",
                         "--output", "json"])


def run_json(args):
    env = dict(os.environ, RUST_BACKTRACE="0")
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if not line.startswith("[")]
        raise RuntimeError(f"{' '.join(args)} failed:\n" + "\n".join(errors[-20:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def produce_row(record_size, in_flight, producers):
    def run(cluster):
        return cluster.produce(record_size, in_flight, producers, DURATION)
    return run


def backlog_row(cluster):
    """Fill a backlog of BACKLOG_MB with 1 KiB records (10 s loads, at most 10 minutes),
    then time reading all of it."""
    filled, started = 0, time.time()
    while filled < BACKLOG_MB * 1024 * 1024 and time.time() - started < 600:
        filled += cluster.produce(1024, 256, 4, "10s")["bytes"]
    return cluster.consume()


# The latest report of each (row, system): a row may depend on another's result.
LAST = {}


def half_nats_rate_row(base):
    """Open loop at half the rate NATS reached in row `base` this round (1 KiB records, one
    producer): each system's p99 ack latency at a load NATS carries easily."""
    def run(cluster):
        rate = LAST.get((base, "nats"), {}).get("records_per_sec")
        if not rate:
            raise RuntimeError(f"row {base} must run before the half-rate row")
        return cluster.produce(1024, 256, 1, DURATION, rate=max(1, int(rate / 2)))
    return run


def latency_row(record_size):
    def run(cluster):
        return cluster.produce(record_size, 1, 1, DURATION)
    return run


# (row name, nodes, NATS with sync_interval always, workload)
ROWS = [
    ("r3-produce-1k-1p", 3, False, produce_row(1024, 256, 1)),
    ("r3-half-nats-rate-1k", 3, False, half_nats_rate_row("r3-produce-1k-1p")),
    ("r3-produce-1k-8p", 3, False, produce_row(1024, 256, 8)),
    ("r3-produce-100b-1p", 3, False, produce_row(100, 256, 1)),
    ("r3-produce-100b-8p", 3, False, produce_row(100, 256, 8)),
    ("r3-sync-produce-1k", 3, False, latency_row(1024)),
    ("r3-produce-1k-1p-nats-sync-always", 3, True, produce_row(1024, 256, 1)),
    ("r3-consume-backlog", 3, False, backlog_row),
    ("r1-produce-1k-1p", 1, False, produce_row(1024, 256, 1)),
    ("r1-produce-1k-8p", 1, False, produce_row(1024, 256, 8)),
    ("r1-produce-100b-1p", 1, False, produce_row(100, 256, 1)),
    ("r1-produce-100b-8p", 1, False, produce_row(100, 256, 8)),
    ("r1-sync-produce-1k", 1, False, latency_row(1024)),
    ("r1-consume-backlog", 1, False, backlog_row),
]


def main():
    selected = os.environ.get("ROWS")
    rows = [row for row in ROWS if not selected or row[0] in selected.split(",")]
    workdir = os.environ.get("WORKDIR") or tempfile.mkdtemp(prefix="cairn-compare-")
    os.makedirs(workdir, exist_ok=True)
    print(f"cairn: {CAIRN}\nnats-server: {NATS_SERVER} "
          f"({subprocess.run([NATS_SERVER, '--version'], capture_output=True, text=True).stdout.strip()})")
    print(f"rounds {ROUNDS}, duration {DURATION}, backlog {BACKLOG_MB} MB, workdir {workdir}")
    print("durability: Cairn fsyncs before every ack; NATS syncs every 2 min by default "
          "(rows ending -nats-sync-always set sync_interval: always)\n", flush=True)
    results = {}
    for round_number in range(ROUNDS):
        for name, nodes, sync_always, workload in rows:
            for system in (CairnCluster, NatsCluster):
                with system(workdir) as cluster:
                    if system is NatsCluster:
                        cluster.start(nodes, sync_always)
                    else:
                        cluster.start(nodes)
                    report = workload(cluster)
                results.setdefault((name, system.name), []).append(report)
                LAST[(name, system.name)] = report
                print(f"round {round_number + 1} {name:<36} {system.name:<5} "
                      f"{report['records_per_sec']:>10.0f} rec/s {report['mb_per_sec']:>8.1f} MB/s "
                      f"p99 {report['latency_ms']['p99']:>8.2f} ms errors {report['errors']}", flush=True)
    print()
    header = (f"{'workload':<36} {'cairn rec/s':>12} {'nats rec/s':>12} {'ratio':>7} "
              f"{'cairn p99 ms':>13} {'nats p99 ms':>12}")
    print(header)
    print("-" * len(header))
    for name, *_ in rows:
        cairn = results[(name, "cairn")]
        nats = results[(name, "nats")]
        cairn_rate = statistics.median(r["records_per_sec"] for r in cairn)
        nats_rate = statistics.median(r["records_per_sec"] for r in nats)
        ratio = cairn_rate / nats_rate if nats_rate else float("inf")
        if "consume" in name:
            # The load generators time different things when reading (a read request vs
            # the gap between messages): only throughput compares.
            cairn_p99 = nats_p99 = "-"
        else:
            cairn_p99 = f'{statistics.median(r["latency_ms"]["p99"] for r in cairn):.2f}'
            nats_p99 = f'{statistics.median(r["latency_ms"]["p99"] for r in nats):.2f}'
        print(f"{name:<36} {cairn_rate:>12.0f} {nats_rate:>12.0f} {ratio:>7.2f} {cairn_p99:>13} {nats_p99:>12}")


if __name__ == "__main__":
    sys.exit(main())
