#!/usr/bin/env bash
# Benchmarks shoal against redis-server on this machine, in the same run.
#
# Builds shoal in release mode, starts Debian's redis-server (no
# persistence) and a shoal node side by side on loopback, then runs
# redis-benchmark (-c 50 -d 64 -r 100000) for SET and GET at -P 1 and
# -P 16, alternating between the two servers, ROUNDS times each, and prints
# throughput, p50 and p99 (median over the rounds) and the ratio
# shoal/redis. It also prints each server's CPU time per request, measured
# from /proc, which is steadier than throughput on a shared machine.
#
# Usage: scripts/bench.sh [ROUNDS]   (environment: N1, N16 requests per run,
#        SHOAL_ARGS extra flags for shoal, e.g. "--durability fsync")
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
N1=${N1:-200000}
N16=${N16:-1000000}
REDIS_PORT=${REDIS_PORT:-16390}
SHOAL_PORT=${SHOAL_PORT:-16391}

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is missing (apt-get install redis-server redis-tools)"; exit 1; }
done

cargo build --release --quiet
work=$(mktemp -d)
redis_pid=""; shoal_pid=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  [ -n "$shoal_pid" ] && kill "$shoal_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
# shellcheck disable=SC2086
target/release/shoal --port "$SHOAL_PORT" --data-dir "$work/shoal" ${SHOAL_ARGS:-} >"$work/shoal.log" 2>&1 &
shoal_pid=$!
for port in "$REDIS_PORT" "$SHOAL_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null || { echo "bench.sh: server on $port did not start"; cat "$work"/*.log; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run PORT PID TEST PIPELINE N -> "rps p50 p99 cpu_us_per_request"
run() {
  local port=$1 pid=$2 test=$3 pipeline=$4 n=$5 t0 t1 line
  t0=$(cpu_ticks "$pid")
  line=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -c 50 -d 64 -r 100000 -P "$pipeline" -n "$n" --csv | tail -1)
  t1=$(cpu_ticks "$pid")
  # "SET","rps","avg","min","p50","p95","p99","max"
  echo "$line" | tr -d '"' | awk -F, -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
    '{ printf "%s %s %s %.2f\n", $2, $5, $7, ticks / hz * 1e6 / n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "shoal vs redis-server $(redis-server --version | awk '{print $3}' | tr -d 'v='), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "redis-benchmark -c 50 -d 64 -r 100000; median of $ROUNDS rounds; cpu = server CPU µs per request"
printf '%-10s %12s %12s %7s %9s %9s %9s %9s %9s %9s\n' test redis_rps shoal_rps ratio redis_p50 shoal_p50 redis_p99 shoal_p99 redis_cpu shoal_cpu
for pipeline in 1 16; do
  n=$N1; [ "$pipeline" = 16 ] && n=$N16
  for test in set get; do
    : >"$work/r"; : >"$work/s"
    for _ in $(seq "$ROUNDS"); do
      run "$REDIS_PORT" "$redis_pid" "$test" "$pipeline" "$n" >>"$work/r"
      run "$SHOAL_PORT" "$shoal_pid" "$test" "$pipeline" "$n" >>"$work/s"
    done
    col() { awk -v c="$2" '{print $c}' "$1" | median; }
    rr=$(col "$work/r" 1); sr=$(col "$work/s" 1)
    printf '%-10s %12.0f %12.0f %7.2f %9s %9s %9s %9s %9s %9s\n' "${test^^}/P$pipeline" "$rr" "$sr" \
      "$(echo "$sr / $rr" | bc -l)" "$(col "$work/r" 2)" "$(col "$work/s" 2)" "$(col "$work/r" 3)" "$(col "$work/s" 3)" \
      "$(col "$work/r" 4)" "$(col "$work/s" 4)"
  done
done
