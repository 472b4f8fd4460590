#!/usr/bin/env bash
# Cluster mode beside one node, same machine, same run (issue: cluster mode benchmark):
#   1. one sigil on the embedded RocksDB (fsync),
#   2. one sigil on a Redis Cluster (3 primaries + 3 replicas, WAIT 1),
#   3. three sigil nodes on that Redis Cluster, the load spread over them: every login's
#      phrase, verification and websocket on three different nodes.
# Each: wallet-login (logins/s), session-check (authenticated req/s), ws-push (push latency;
# cross-node in 3). Writes bench/results/cluster-<date>.json and prints a table.
# On one 2-core machine all nodes, six Redis processes and the load generator share the same
# two cores: read docs/benchmarks.md "Cluster mode" before comparing the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sigil-http -p sigil-load >&2
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
sigil="$target/release/sigil"
load="$target/release/sigil-load"
ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d)
out="bench/results/cluster-$(date -u +%F).json"
duration="${DURATION:-10s}"
export SIGIL_LIMITS__ENABLED=false RUST_LOG=warn

measure() { # name urls
  local name=$1 urls=$2
  "$load" wallet-login --url "$urls" -c 64 -d "$duration" --quiet --json "$work/$name-login.json" >&2
  "$load" session-check --url "$urls" -c 64 -d "$duration" --sessions 1000 --quiet --json "$work/$name-check.json" >&2
  # Push latency as the single-node harness defines it (16 logging in: a busy server, not one
  # whose every stage queues for CPU), then at saturation (64).
  "$load" ws-push --url "$urls" -c 16 --sockets 2000 --quiet --json "$work/$name-push.json" >&2
  "$load" ws-push --url "$urls" -c 64 --sockets 2000 --quiet --json "$work/$name-push64.json" >&2
}

# 1. One node on RocksDB.
SIGIL_SERVER__LISTEN=127.0.0.1:8090 SIGIL_SERVER__DATA_DIR="$work/rocks" "$sigil" serve 2>"$work/rocks.log" &
pid=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:8090/readyz >/dev/null 2>&1 && break; sleep 0.1; done
measure rocksdb-1 http://127.0.0.1:8090
kill "$pid"; wait "$pid" 2>/dev/null || true

# 2 and 3. The Redis Cluster and three nodes (ops/cluster/up stops nothing it did not start).
export SIGIL_CLUSTER_DIR="$work/cluster" REDIS_BASE_PORT=7100 SIGIL_BASE_PORT=8100
SIGIL_BIN="$sigil" ops/cluster/up >&2
trap 'ops/cluster/down >&2 || true; rm -rf "$work"' EXIT
measure redis-1 http://127.0.0.1:8101
measure redis-3 http://127.0.0.1:8101,http://127.0.0.1:8102,http://127.0.0.1:8103
for n in 1 2 3; do
  curl -s "http://127.0.0.1:810$n/metrics" | grep -E '^sigil_cluster_push_lag_seconds_(bucket|count|sum)' > "$work/lag-$n.txt" || true
done

python3 - "$work" "$out" <<'PY'
import json, sys, os, datetime
work, out = sys.argv[1], sys.argv[2]
rows = {}
for name in ["rocksdb-1", "redis-1", "redis-3"]:
    r = {}
    for kind in ["login", "check", "push", "push64"]:
        with open(os.path.join(work, f"{name}-{kind}.json")) as f:
            r[kind] = json.load(f)
    rows[name] = r
# Cross-node relay lag (publish on one node -> arrival on another), from the nodes' histograms.
lag = {}
for n in (1, 2, 3):
    for line in open(os.path.join(work, f"lag-{n}.txt")):
        k, v = line.rsplit(" ", 1)
        lag[k] = lag.get(k, 0) + float(v)
def lag_quantile(q):
    buckets = sorted((float(k.split('le="')[1].split('"')[0].replace("+Inf", "inf")), v) for k, v in lag.items() if "_bucket" in k)
    total = buckets[-1][1] if buckets else 0
    for le, c in buckets:
        if total and c >= q * total:
            return le * 1000
    return None
report = {
    "date": datetime.datetime.utcnow().isoformat() + "Z",
    "machine": f"{os.cpu_count()} cores, load generator on the same cores",
    "rows": {name: {
        "logins_per_s": r["login"]["throughput_per_s"],
        "login_p99_ms": r["login"]["latency_ms"]["p99"],
        "login_errors": r["login"].get("errors", {}),
        "authenticated_per_s": r["check"]["throughput_per_s"],
        "authenticated_p99_ms": r["check"]["latency_ms"]["p99"],
        "push_p50_ms": r["push"]["latency_ms"]["p50"],
        "push_p99_ms": r["push"]["latency_ms"]["p99"],
        "push_errors": r["push"].get("errors", {}),
        "push_saturated_p50_ms": r["push64"]["latency_ms"]["p50"],
        "push_saturated_p99_ms": r["push64"]["latency_ms"]["p99"],
        "push_saturated_errors": r["push64"].get("errors", {}),
    } for name, r in rows.items()},
    "relay_lag_bucket_ms": {"p50_le": lag_quantile(0.5), "p99_le": lag_quantile(0.99), "count": lag.get("sigil_cluster_push_lag_seconds_count")},
}
with open(out, "w") as f:
    json.dump(report, f, indent=2)
print(f"{'setup':<12}{'logins/s':>10}{'login p99':>11}{'auth req/s':>12}{'auth p99':>10}{'push p50':>10}{'push p99':>10}{'p99 at 64':>11}")
for name, r in report["rows"].items():
    print(f"{name:<12}{r['logins_per_s']:>10.0f}{r['login_p99_ms']:>9.1f}ms{r['authenticated_per_s']:>12.0f}{r['authenticated_p99_ms']:>8.2f}ms{r['push_p50_ms']:>8.2f}ms{r['push_p99_ms']:>8.2f}ms{r['push_saturated_p99_ms']:>9.2f}ms")
print("relay lag (publish -> other node), histogram bucket bounds:", report["relay_lag_bucket_ms"])
print("written:", out)
PY
