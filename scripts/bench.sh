#!/usr/bin/env bash
# Benchmarks shoal against redis-server on this machine, in the same run.
#
#   scripts/bench.sh [single|cluster|all] [ROUNDS]      (default: all 3)
#
# Builds shoal in release mode and starts, side by side on loopback:
# Debian's redis-server (no persistence), a single shoal node, and (for
# cluster) a three-node shoal cluster with N=3, R=W=2. Then runs
# redis-benchmark -c 50 -d 64 -r 100000 for SET and GET at -P 1 and -P 16
# against each target in turn, ROUNDS times, and prints the median
# throughput, p50, p99, the ratios to redis-server and to the single node,
# and the server CPU time per request (from /proc; steadier than throughput
# on a shared machine).
#
# Cluster targets: "cluster/one" sends all 50 connections to one node;
# "cluster/spread" runs three redis-benchmarks at once, 17 connections each
# to a different node (rps summed, p50 averaged, p99 the worst of the three).
#
# Environment: N1, N16 requests per run at -P 1 / -P 16; SHOAL_ARGS extra
# flags for every shoal node (e.g. "--durability fsync").
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
ROUNDS=${2:-3}
N1=${N1:-200000}
N16=${N16:-1000000}
REDIS_PORT=16390
SINGLE_PORT=16391
CLUSTER_PORTS=(16392 16393 16394)

case "$MODE" in single | cluster | all) ;; *) echo "usage: scripts/bench.sh [single|cluster|all] [ROUNDS]"; exit 2 ;; esac
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is missing (apt-get install redis-server redis-tools)"; exit 1; }
done

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/shoal
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_up() {
  for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "bench.sh: server on port $1 did not start"; cat "$work"/*.log; exit 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
REDIS_PID=$!; pids+=("$REDIS_PID")
# shellcheck disable=SC2086
"$BIN" --port "$SINGLE_PORT" --peer-port $((SINGLE_PORT + 10000)) --data-dir "$work/data-single" ${SHOAL_ARGS:-} >"$work/single.log" 2>&1 &
SINGLE_PID=$!; pids+=("$SINGLE_PID")
wait_up "$REDIS_PORT"; wait_up "$SINGLE_PORT"

CLUSTER_PIDS=()
if [ "$MODE" != single ]; then
  seeds=$(printf '127.0.0.1:%s,' $((CLUSTER_PORTS[0] + 10000)) $((CLUSTER_PORTS[1] + 10000)) $((CLUSTER_PORTS[2] + 10000)))
  for port in "${CLUSTER_PORTS[@]}"; do
    # shellcheck disable=SC2086
    SHOAL_N=3 SHOAL_R=2 SHOAL_W=2 "$BIN" --port "$port" --peer-port $((port + 10000)) \
      --data-dir "$work/data-cluster-$port" --seeds "${seeds%,}" ${SHOAL_ARGS:-} >"$work/cluster-$port.log" 2>&1 &
    CLUSTER_PIDS+=("$!"); pids+=("$!")
  done
  for port in "${CLUSTER_PORTS[@]}"; do wait_up "$port"; done
  for _ in $(seq 200); do
    [ "$(redis-cli -p "${CLUSTER_PORTS[0]}" info cluster | tr -d '\r' | awk -F: '/shoal_members/{print $2}')" = 3 ] && break
    sleep 0.05
  done
fi

cpu_ticks() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$t"; }

# bench TEST PIPELINE N CONNECTIONS PORT -> "rps p50 p99" (one CSV line)
bench() {
  redis-benchmark -h 127.0.0.1 -p "$5" -t "$1" -c "$4" -d 64 -r 100000 -P "$2" -n "$3" --csv | tail -1 | tr -d '"' |
    awk -F, '{ print $2, $5, $7 }'
}

# run TARGET TEST PIPELINE N -> "rps p50 p99 cpu_us_per_request"
run() {
  local target=$1 test=$2 pipeline=$3 n=$4 t0 t1 line ticks
  local -a watch
  case "$target" in
    redis) watch=("$REDIS_PID") ;;
    single) watch=("$SINGLE_PID") ;;
    *) watch=("${CLUSTER_PIDS[@]}") ;;
  esac
  t0=$(cpu_ticks "${watch[@]}")
  case "$target" in
    redis) line=$(bench "$test" "$pipeline" "$n" 50 "$REDIS_PORT") ;;
    single) line=$(bench "$test" "$pipeline" "$n" 50 "$SINGLE_PORT") ;;
    cluster/one) line=$(bench "$test" "$pipeline" "$n" 50 "${CLUSTER_PORTS[0]}") ;;
    cluster/spread)
      local i bpids=()
      for i in 0 1 2; do
        bench "$test" "$pipeline" $((n / 3)) 17 "${CLUSTER_PORTS[$i]}" >"$work/spread$i" &
        bpids+=("$!")
      done
      wait "${bpids[@]}"
      line=$(cat "$work"/spread0 "$work"/spread1 "$work"/spread2 |
        awk '{ rps += $1; p50 += $2; if ($3 > p99) p99 = $3 } END { printf "%.2f %.3f %.3f", rps, p50 / NR, p99 }')
      ;;
  esac
  t1=$(cpu_ticks "${watch[@]}")
  ticks=$((t1 - t0))
  echo "$line" | awk -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" '{ printf "%s %s %s %.2f\n", $1, $2, $3, ticks / hz * 1e6 / n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
col() { awk -v c="$2" '{ print $c }' "$1" | median; }

targets=(redis single)
[ "$MODE" = single ] || targets+=(cluster/one cluster/spread)
[ "$MODE" = cluster ] && targets=(redis single cluster/one cluster/spread)

echo "shoal vs redis-server $(redis-server --version | awk '{print $3}' | tr -d 'v='), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "redis-benchmark -c 50 -d 64 -r 100000; median of $ROUNDS rounds; cpu = server CPU µs per request (all nodes)"
printf '%-10s %-15s %10s %8s %8s %8s %8s %8s\n' test target rps x_redis x_single p50_ms p99_ms cpu_us
for pipeline in 1 16; do
  n=$N1; [ "$pipeline" = 16 ] && n=$N16
  for test in set get; do
    for target in "${targets[@]}"; do : >"$work/${target//\//_}"; done
    for _ in $(seq "$ROUNDS"); do
      for target in "${targets[@]}"; do run "$target" "$test" "$pipeline" "$n" >>"$work/${target//\//_}"; done
    done
    redis_rps=$(col "$work/redis" 1); single_rps=$(col "$work/single" 1)
    for target in "${targets[@]}"; do
      f="$work/${target//\//_}"; rps=$(col "$f" 1)
      printf '%-10s %-15s %10.0f %8.2f %8.2f %8s %8s %8s\n' "${test^^}/P$pipeline" "$target" "$rps" \
        "$(echo "$rps / $redis_rps" | bc -l)" "$(echo "$rps / $single_rps" | bc -l)" "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)"
    done
  done
done
