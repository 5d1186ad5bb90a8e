#!/usr/bin/env bash
# Benchmarks shoal against redis-server on this machine, in the same run.
#
#   scripts/bench.sh [single|cluster|sweep|degraded|antientropy|rebalance|all] [ROUNDS]      (default: all 3)
#
# Builds shoal in release mode and starts, side by side on loopback:
# Debian's redis-server twice, without persistence ("redis") and with an
# append-only file written but never fsynced ("redis-aof": --appendonly yes
# --appendfsync no), a single shoal node, and (for cluster) a three-node
# shoal cluster with N=3, R=W=2. Then runs redis-benchmark -c 50 -d 64
# -r 100000 for SET and GET at -P 1 and -P 16 against each target in turn,
# ROUNDS times, and prints the median throughput, p50, p99, the ratios to
# redis, to redis-aof and to the single node, the server CPU time per
# request (from /proc, waited-for children included, as redis-aof forks to
# rewrite its file; steadier than throughput on a shared machine), and for
# shoal the heap allocations per request (INFO total_allocations read
# before and after each run, summed over the nodes).
#
# Cluster targets: "cluster/one" sends all 50 connections to one node;
# "cluster/spread" runs three redis-benchmarks at once, 17 connections each
# to a different node (rps summed, p50 averaged, p99 the worst of the three).
#
# sweep: single shoal nodes with K = 1, 2, … nproc storage threads
# (SHOAL_STORAGE_THREADS), each on a fresh data directory, measured in turn
# as above for SET at -P 1 and -P 16; prints a table of their own with the
# ratio to K = 1.
#
# degraded: a three-node cluster (N=3, R=W=2) measured as cluster/one,
# healthy, then with its third node killed (SIGKILL; W=2 is still met, the
# writes it misses become hints on their coordinator), then the third
# node restarted: the table gives each test's throughput relative to the
# healthy cluster in the same run, and the hints handed back, how long that
# took and the rate (keys/s).
#
# antientropy: (a) a three-node cluster without hints or background
# anti-entropy, its third node killed (SIGKILL) while AE_KEYS distinct keys
# are written through the first (redis-cli --pipe), then restarted and
# repaired with SHOAL.REPAIR: how long until it holds every key the others
# hold, keys/s, and the repair's messages and bytes (its INFO antientropy).
# (b) a fresh cluster with background anti-entropy every 5 s
# (SHOAL_ANTI_ENTROPY_INTERVAL=5; the benchmark's writes keep the replicas'
# trees apart while they are in flight), measured as cluster/one with the
# background pass paused on every node (SHOAL.REPAIR PAUSE) and running,
# alternately in each round: x_paused = rps running / rps paused.
#
# rebalance: a three-node cluster (N=3, R=W=2) loaded with RB_KEYS keys
# (key:000000000000 on, redis-benchmark's names, ~100-byte values, through
# redis-cli --pipe), measured as cluster/one (SET and GET at -P 1 and -P 16)
# before; then a fourth node started with the three as seeds (its join is
# committed at once) and the same measured again while its transfers run:
# each row says whether the change was still in progress when it ended
# (INFO shoal_ring_change, read before and after each). The joining node's
# transfer-rate is RB_RATE if set, else chosen so that the transfers last
# about 2.5 times as long as the measurements before took (the default,
# 20mb, would end them in a few seconds). Prints SET/GET throughput during
# relative to before, and to redis-server measured in the same run; the
# keys moved (INFO shoal_transfer_keys summed over the nodes) against the
# ideal, the replicas held before (INFO keyspace summed) / 4, and the
# transfer's MiB/s (shoal_transfer_bytes summed / the time from the start
# of the fourth node until shoal_ring_change is 0 again). Then a fifth node
# joins the idle cluster at the default transfer-rate: its keys moved
# against the replicas / 5 and its MiB/s.
#
# "all" runs the cluster table, then the sweep, then degraded, then
# antientropy, then rebalance.
#
# Environment: N1, N16 requests per run at -P 1 / -P 16; AE_KEYS the keys
# written while the node is down in antientropy (default 100000); RB_KEYS
# the keys loaded in rebalance (default 200000, at least 100000 so that
# the benchmark's SETs, -r 100000, only overwrite); RB_RATE the fourth
# node's transfer-rate in rebalance (bytes a second, or e.g. 512kb); SHOAL_ARGS extra
# flags for every shoal node (e.g. "--durability fsync"); BENCH_PORT the
# first client port (default 16390; the servers take it and the next
# 5 + nproc, shoal's peer ports are 10000 above). The script stops if one
# is in use.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
ROUNDS=${2:-3}
N1=${N1:-200000}
N16=${N16:-1000000}
BASE=${BENCH_PORT:-16390}
CORES=$(nproc)

AE_KEYS=${AE_KEYS:-100000}
RB_KEYS=${RB_KEYS:-200000}
RB_RATE=${RB_RATE:-}

case "$MODE" in
  single | cluster | sweep | degraded | antientropy | rebalance | all) ;;
  *) echo "usage: scripts/bench.sh [single|cluster|sweep|degraded|antientropy|rebalance|all] [ROUNDS]"; exit 2 ;;
esac
[ "$RB_KEYS" -ge 100000 ] 2>/dev/null || { echo "bench.sh: RB_KEYS must be a number, at least 100000"; exit 2; }
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is missing (apt-get install redis-server redis-tools)"; exit 1; }
done

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $(seq "$BASE" $((BASE + 5 + CORES))); do
  for p in "$port" $((port + 10000)); do
    in_use "$p" && { echo "bench.sh: port $p is in use (another bench.sh? set BENCH_PORT)"; exit 1; }
  done
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

# Every target's client ports and server pids, space-separated.
declare -A PORTS PIDS

# wait_up PORT PID: until the server answers, and it is the one started.
wait_up() {
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || break
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "bench.sh: server on port $1 did not start"; tail -n 5 "$work"/*.log; exit 1
}

# start_redis TARGET PORT ARGS...
start_redis() {
  local target=$1 port=$2 dir="$work/${1//\//_}"
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$dir" "$@" >"$work/${target}.log" 2>&1 &
  PORTS[$target]=$port; PIDS[$target]=$!; pids+=("$!")
  wait_up "$port" "$!"
}

# start_shoal NAME PORT [ENV=VALUE...]: one node on a fresh data directory.
start_shoal() {
  local name=$1 port=$2
  shift 2
  # shellcheck disable=SC2086
  env "$@" "$BIN" --port "$port" --peer-port $((port + 10000)) --data-dir "$work/data-$name" \
    ${SHOAL_ARGS:-} >"$work/$name.log" 2>&1 &
  pids+=("$!")
}

# Extra ENV=VALUE settings of the cluster's nodes (antientropy's).
CLUSTER_ENV=()

# start_cluster_node PORT: one node of the three-node cluster (again, on
# its data directory, after a restart).
start_cluster_node() {
  local seeds
  seeds=$(printf '127.0.0.1:%s,' $((BASE + 10002)) $((BASE + 10003)) $((BASE + 10004)))
  start_shoal "cluster-$1" "$1" SHOAL_N=3 SHOAL_R=2 SHOAL_W=2 SHOAL_SEEDS="${seeds%,}" "${CLUSTER_ENV[@]}"
}

start_cluster() {
  local port ports=() node_pids=()
  for port in $((BASE + 2)) $((BASE + 3)) $((BASE + 4)); do
    start_cluster_node "$port"
    ports+=("$port"); node_pids+=("$!")
  done
  for i in 0 1 2; do wait_up "${ports[$i]}" "${node_pids[$i]}"; done
  # Every node, not just the first: one that has not joined yet answers
  # TRYAGAIN (and redis-benchmark gives up).
  for port in "${ports[@]}"; do
    for _ in $(seq 200); do
      [ "$(redis-cli -p "$port" info cluster | tr -d '\r' | awk -F: '/shoal_members:/{print $2}')" = 3 ] && continue 2
      sleep 0.05
    done
    echo "bench.sh: the node on port $port did not join the cluster"; tail -n 5 "$work"/cluster-*.log; exit 1
  done
  PORTS[cluster/one]=${ports[*]}; PIDS[cluster/one]=${node_pids[*]}
  PORTS[cluster/spread]=${ports[*]}; PIDS[cluster/spread]=${node_pids[*]}
}

# stop_all: stops every server started so far.
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

cpu_ticks() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat"))); done; echo "$t"; }

# allocations TARGET -> shoal's heap allocations so far, summed over its
# nodes ("-" for redis).
allocations() {
  case "$1" in redis*) echo - ; return ;; esac
  local port total=0
  for port in ${PORTS[$1]}; do
    total=$((total + $(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "total_allocations" { print $2 }')))
  done
  echo "$total"
}

# bench TEST PIPELINE N CONNECTIONS PORT -> "rps p50 p99" (one CSV line)
bench() {
  redis-benchmark -h 127.0.0.1 -p "$5" -t "$1" -c "$4" -d 64 -r 100000 -P "$2" -n "$3" --csv | tail -1 | tr -d '"' |
    awk -F, '{ print $2, $5, $7 }'
}

# run TARGET TEST PIPELINE N -> "rps p50 p99 cpu_us_per_request allocations_per_request"
run() {
  local target=$1 test=$2 pipeline=$3 n=$4 t0 t1 a0 a1 line ticks
  local -a watch ports
  read -ra watch <<<"${PIDS[$target]}"
  read -ra ports <<<"${PORTS[$target]}"
  # antientropy's targets: one cluster, its background pass paused or not.
  case "$target" in
    ae/paused) background PAUSE "${ports[@]}" ;;
    ae/running) background RESUME "${ports[@]}" ;;
  esac
  a0=$(allocations "$target")
  t0=$(cpu_ticks "${watch[@]}")
  case "$target" in
    cluster/spread)
      local i bpids=()
      for i in 0 1 2; do
        bench "$test" "$pipeline" $((n / 3)) 17 "${ports[$i]}" >"$work/spread$i" &
        bpids+=("$!")
      done
      wait "${bpids[@]}"
      line=$(cat "$work"/spread0 "$work"/spread1 "$work"/spread2 |
        awk '{ rps += $1; p50 += $2; if ($3 > p99) p99 = $3 } END { printf "%.2f %.3f %.3f", rps, p50 / NR, p99 }')
      ;;
    *) line=$(bench "$test" "$pipeline" "$n" 50 "${ports[0]}") ;;
  esac
  t1=$(cpu_ticks "${watch[@]}")
  a1=$(allocations "$target")
  ticks=$((t1 - t0))
  echo "$line" | awk -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" -v a0="$a0" -v a1="$a1" '{
    allocs = (a0 == "-") ? "-" : sprintf("%.1f", (a1 - a0) / n)
    printf "%s %s %s %.2f %s\n", $1, $2, $3, ticks / hz * 1e6 / n, allocs
  }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
col() { awk -v c="$2" '{ print $c }' "$1" | median; }
file_of() { echo "$work/rows-${1//\//_}"; }
ratio() { echo "$1 / $2" | bc -l; }

# measure TEST PIPELINE TARGETS...: ROUNDS runs of each target in turn,
# one line per run in the target's file.
measure() {
  local test=$1 pipeline=$2 n=$N1 target
  shift 2
  [ "$pipeline" = 16 ] && n=$N16
  for target in "$@"; do : >"$(file_of "$target")"; done
  for _ in $(seq "$ROUNDS"); do
    for target in "$@"; do run "$target" "$test" "$pipeline" "$n" >>"$(file_of "$target")"; done
  done
}

compare() {
  local targets=(redis redis-aof single) pipeline test target f rps redis_rps aof_rps single_rps
  start_redis redis "$BASE" --appendonly no
  start_redis redis-aof $((BASE + 5)) --appendonly yes --appendfsync no
  start_shoal single $((BASE + 1))
  PORTS[single]=$((BASE + 1)); PIDS[single]=$!
  wait_up "$((BASE + 1))" "$!"
  if [ "$MODE" != single ]; then
    start_cluster
    targets+=(cluster/one cluster/spread)
  fi
  echo "shoal vs redis-server $(redis-server --version | awk '{print $3}' | tr -d 'v='), $CORES cores, $(date -u +%Y-%m-%d)"
  echo "redis-benchmark -c 50 -d 64 -r 100000; median of $ROUNDS rounds; cpu = server CPU µs per request (all nodes);"
  echo "allocs = shoal heap allocations per request (all nodes); redis-aof = appendonly yes, appendfsync no"
  printf '%-10s %-15s %10s %8s %8s %8s %8s %8s %8s %8s\n' test target rps x_redis x_aof x_single p50_ms p99_ms cpu_us allocs
  for pipeline in 1 16; do
    for test in set get; do
      measure "$test" "$pipeline" "${targets[@]}"
      redis_rps=$(col "$(file_of redis)" 1); aof_rps=$(col "$(file_of redis-aof)" 1); single_rps=$(col "$(file_of single)" 1)
      for target in "${targets[@]}"; do
        f=$(file_of "$target"); rps=$(col "$f" 1)
        printf '%-10s %-15s %10.0f %8.2f %8.2f %8.2f %8s %8s %8s %8s\n' "${test^^}/P$pipeline" "$target" "$rps" \
          "$(ratio "$rps" "$redis_rps")" "$(ratio "$rps" "$aof_rps")" "$(ratio "$rps" "$single_rps")" \
          "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)" "$(col "$f" 5)"
      done
    done
  done
}

sweep() {
  local targets=() k port pipeline target f rps k1_rps
  for k in $(seq "$CORES"); do
    port=$((BASE + 5 + k))
    start_shoal "storage-$k" "$port" SHOAL_STORAGE_THREADS="$k"
    PORTS[storage/$k]=$port; PIDS[storage/$k]=$!
    wait_up "$port" "$!"
    targets+=("storage/$k")
  done
  echo "storage sweep, $CORES cores, $(date -u +%Y-%m-%d): storage/K = a single shoal node with K storage threads"
  echo "redis-benchmark -t set -c 50 -d 64 -r 100000; median of $ROUNDS rounds; x_k1 = rps relative to storage/1"
  printf '%-10s %-15s %10s %8s %8s %8s %8s %8s\n' test target rps x_k1 p50_ms p99_ms cpu_us allocs
  for pipeline in 1 16; do
    measure set "$pipeline" "${targets[@]}"
    k1_rps=$(col "$(file_of storage/1)" 1)
    for target in "${targets[@]}"; do
      f=$(file_of "$target"); rps=$(col "$f" 1)
      printf '%-10s %-15s %10.0f %8.2f %8s %8s %8s %8s\n' "SET/P$pipeline" "$target" "$rps" "$(ratio "$rps" "$k1_rps")" \
        "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)" "$(col "$f" 5)"
    done
  done
}

# info_sum FIELD PORT...: an INFO field summed over nodes.
info_sum() {
  local field=$1 port total=0
  shift
  for port in "$@"; do
    total=$((total + $(redis-cli -p "$port" info all | tr -d '\r' | awk -F: -v f="$field" '$1 == f { print $2 }')))
  done
  echo "$total"
}

degraded() {
  local ports nodes pipeline test f healthy down hints t0 t1 members
  start_cluster
  read -ra ports <<<"${PORTS[cluster/one]}"
  read -ra nodes <<<"${PIDS[cluster/one]}"
  echo "one node of three down, $CORES cores, $(date -u +%Y-%m-%d): cluster/one (N=3, R=W=2), healthy, then its third node killed"
  echo "redis-benchmark -c 50 -d 64 -r 100000 through the first node; median of $ROUNDS rounds; x_healthy = rps down / rps healthy"
  for pipeline in 1 16; do
    for test in set get; do
      measure "$test" "$pipeline" cluster/one
      cp "$(file_of cluster/one)" "$work/healthy-$test-$pipeline"
    done
  done
  kill -9 "${nodes[2]}"
  wait "${nodes[2]}" 2>/dev/null || true
  for _ in $(seq 400); do
    members=$(redis-cli -p "${ports[0]}" info cluster | tr -d '\r' | awk -F: '$1 == "shoal_members_up" { print $2 }')
    [ "$members" = 2 ] && break
    sleep 0.05
  done
  [ "$members" = 2 ] || { echo "bench.sh: the killed node is not seen down"; exit 1; }
  PIDS[cluster/one]="${nodes[0]} ${nodes[1]}"; PORTS[cluster/one]="${ports[0]} ${ports[1]}"
  printf '%-10s %12s %12s %10s %8s %8s %8s
' test healthy_rps down_rps x_healthy p50_ms p99_ms cpu_us
  for pipeline in 1 16; do
    for test in set get; do
      measure "$test" "$pipeline" cluster/one
      f=$(file_of cluster/one)
      healthy=$(col "$work/healthy-$test-$pipeline" 1); down=$(col "$f" 1)
      printf '%-10s %12.0f %12.0f %10.2f %8s %8s %8s
' "${test^^}/P$pipeline" "$healthy" "$down" \
        "$(ratio "$down" "$healthy")" "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)"
    done
  done
  hints=$(info_sum hints_pending "${ports[0]}" "${ports[1]}")
  start_cluster_node "${ports[2]}"
  t0=$(date +%s.%N)
  wait_up "${ports[2]}" "$!"
  for _ in $(seq 6000); do
    [ "$(info_sum hints_pending "${ports[0]}" "${ports[1]}")" = 0 ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  [ "$(info_sum hints_pending "${ports[0]}" "${ports[1]}")" = 0 ] || { echo "bench.sh: hints not handed back within 300 s"; exit 1; }
  printf 'hints handed back after the restart: %d keys in %.1f s (from the restart), %.0f keys/s\n' \
    "$hints" "$(ratio "($t1 - $t0)" 1)" "$(ratio "$hints" "($t1 - $t0)")"
}

# background PAUSE|RESUME PORT...: the background anti-entropy pass of
# every node.
background() {
  local verb=$1 port
  shift
  for port in "$@"; do
    [ "$(redis-cli -p "$port" shoal.repair "$verb")" = OK ] || { echo "bench.sh: SHOAL.REPAIR $verb failed on $port"; exit 1; }
  done
}

# info_field FIELD PORT: one INFO field of one node.
info_field() { redis-cli -p "$2" info all | tr -d '\r' | awk -F: -v f="$1" '$1 == f { print $2 }'; }

# local_keys PORT: the keys a node holds itself (INFO keyspace).
local_keys() {
  local n
  n=$(redis-cli -p "$1" info keyspace | tr -d '\r' | sed -n 's/^db0:keys=\([0-9]*\),.*/\1/p')
  echo "${n:-0}"
}

# members_up PORT COUNT: waits until the node sees COUNT members up.
members_up() {
  for _ in $(seq 600); do
    [ "$(info_field shoal_members_up "$1")" = "$2" ] && return 0
    sleep 0.05
  done
  echo "bench.sh: the node on port $1 does not see $2 members up"; exit 1
}

# write_keys PORT COUNT: SET ae:0 … ae:COUNT-1 to 64 bytes each through
# one node, pipelined (redis-cli --pipe); every write must succeed.
write_keys() {
  local out
  out=$(awk -v n="$2" 'BEGIN {
    v = sprintf("%064d", 0)
    for (i = 0; i < n; i++) {
      k = "ae:" i
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n", length(k), k, v
    }
  }' | redis-cli -p "$1" --pipe)
  echo "$out" | grep -q "errors: 0, replies: $2" || { echo "bench.sh: writes failed: $out"; exit 1; }
}

# repair_field PORT FIELD: one field of a node's SHOAL.REPAIR STATUS.
repair_field() { redis-cli -p "$1" shoal.repair status | awk -v f="$2" 'NR % 2 == 1 && $0 == f { getline; print }'; }

AE_FIELDS=(exchanges messages_sent keys_compared keys_fetched keys_sent keys_repaired bytes_sent bytes_received)

# ae_repair: a node that missed AE_KEYS writes, repaired by SHOAL.REPAIR
# alone (no hints, no background pass).
ae_repair() {
  local ports nodes expected t0 t1 t2 keys f again=0 short=""
  rm -rf "$work"/data-cluster-*
  CLUSTER_ENV=(SHOAL_HINTED_HANDOFF=false SHOAL_ANTI_ENTROPY_INTERVAL=0)
  start_cluster
  read -ra ports <<<"${PORTS[cluster/one]}"
  read -ra nodes <<<"${PIDS[cluster/one]}"
  echo "anti-entropy, $CORES cores, $(date -u +%Y-%m-%d): a three-node cluster (N=3, R=W=2), hints off"
  kill -9 "${nodes[2]}"
  wait "${nodes[2]}" 2>/dev/null || true
  members_up "${ports[0]}" 2
  write_keys "${ports[0]}" "$AE_KEYS"
  expected=$(local_keys "${ports[0]}")
  [ "$(local_keys "${ports[1]}")" = "$expected" ] || { echo "bench.sh: nodes 1 and 2 hold different counts"; exit 1; }
  t0=$(date +%s.%N)
  start_cluster_node "${ports[2]}"
  wait_up "${ports[2]}" "$!"
  members_up "${ports[2]}" 3
  t1=$(date +%s.%N)
  [ "$(redis-cli -p "${ports[2]}" shoal.repair | head -1)" = running ] || { echo "bench.sh: SHOAL.REPAIR failed"; exit 1; }
  for _ in $(seq 6000); do
    keys=$(local_keys "${ports[2]}")
    [ "$keys" = "$expected" ] && break
    # A repair that ended short (some replica it could not compare): again.
    if [ "$(repair_field "${ports[2]}" running)" = 0 ]; then
      again=$((again + 1))
      short+=" $(repair_field "${ports[2]}" partitions_incomplete)"
      redis-cli -p "${ports[2]}" shoal.repair >/dev/null
    fi
    sleep 0.05
  done
  t2=$(date +%s.%N)
  [ "$keys" = "$expected" ] || { echo "bench.sh: the node holds $keys of $expected keys after 300 s"; exit 1; }
  # The counters once the repair has ended.
  for _ in $(seq 600); do [ "$(repair_field "${ports[2]}" running)" = 0 ] && break; sleep 0.05; done
  printf 'repair of a node that missed every write (hints off, kill -9, restart, SHOAL.REPAIR):\n'
  printf '  %d keys in %.1f s from the repair (%.0f keys/s); %.1f s from the restart\n' \
    "$expected" "$(ratio "($t2 - $t1)" 1)" "$(ratio "$expected" "($t2 - $t1)")" "$(ratio "($t2 - $t0)" 1)"
  [ "$again" = 0 ] || printf '  asked again %d times: the repairs before ended with%s partitions incomplete\n' "$again" "$short"
  printf '  the repairing node'\''s INFO antientropy:'
  for f in "${AE_FIELDS[@]}"; do printf ' %s=%s' "$f" "$(info_field "$f" "${ports[2]}")"; done
  printf '\n  bytes per key repaired: %.0f\n' \
    "$(ratio "($(info_field bytes_sent "${ports[2]}") + $(info_field bytes_received "${ports[2]}"))" "$expected")"
}

# ae_load: throughput through the first node with the background pass
# running hard on every node, and paused, alternately.
ae_load() {
  local ports pipeline test target f paused running before after
  rm -rf "$work"/data-cluster-*
  CLUSTER_ENV=(SHOAL_HINTED_HANDOFF=false SHOAL_ANTI_ENTROPY_INTERVAL=5)
  start_cluster
  read -ra ports <<<"${PORTS[cluster/one]}"
  for target in ae/paused ae/running; do PORTS[$target]=${PORTS[cluster/one]}; PIDS[$target]=${PIDS[cluster/one]}; done
  echo "background anti-entropy every 5 s (SHOAL_ANTI_ENTROPY_INTERVAL=5) running on every node, or paused (SHOAL.REPAIR PAUSE)"
  echo "redis-benchmark -c 50 -d 64 -r 100000 through the first node; median of $ROUNDS rounds, alternating; x_paused = rps running / rps paused;"
  echo "p50, p99 with it running; cpu = server CPU µs per request, all nodes"
  printf '%-10s %12s %12s %10s %8s %8s %11s %12s\n' test paused_rps running_rps x_paused p50_ms p99_ms cpu_us_paused cpu_us_running
  # Counters read while paused, so that they stand still.
  background PAUSE "${ports[@]}"
  before=$(for f in "${AE_FIELDS[@]}"; do info_sum "$f" "${ports[@]}"; done)
  for pipeline in 1 16; do
    for test in set get; do
      measure "$test" "$pipeline" ae/paused ae/running
      paused=$(col "$(file_of ae/paused)" 1); running=$(col "$(file_of ae/running)" 1); f=$(file_of ae/running)
      printf '%-10s %12.0f %12.0f %10.2f %8s %8s %11s %12s\n' "${test^^}/P$pipeline" "$paused" "$running" \
        "$(ratio "$running" "$paused")" "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$(file_of ae/paused)" 4)" "$(col "$f" 4)"
    done
  done
  background PAUSE "${ports[@]}"
  after=$(for f in "${AE_FIELDS[@]}"; do info_sum "$f" "${ports[@]}"; done)
  printf 'anti-entropy meanwhile, summed over the nodes:'
  paste <(printf '%s\n' "${AE_FIELDS[@]}") <(echo "$before") <(echo "$after") | while read -r f b a; do printf ' %s=%d' "$f" $((a - b)); done
  echo
}

# load_keys PORT COUNT: SET key:000000000000 … (redis-benchmark's key
# names) to 100 bytes each through one node, pipelined; every write must
# succeed.
load_keys() {
  local out
  out=$(awk -v n="$2" 'BEGIN {
    v = sprintf("%0100d", 0)
    for (i = 0; i < n; i++) {
      k = sprintf("key:%012d", i)
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(k), k, v
    }
  }' | redis-cli -p "$1" --pipe)
  echo "$out" | grep -q "errors: 0, replies: $2" || { echo "bench.sh: writes failed: $out"; exit 1; }
}

# settle COUNT SECONDS PORT...: until every node sees a ring of COUNT
# members with no change in progress or staged.
settle() {
  local count=$1 limit=$2 port
  shift 2
  for port in "$@"; do
    for _ in $(seq $((limit * 20))); do
      [ "$(info_field shoal_ring_members "$port")" = "$count" ] && [ "$(info_field shoal_ring_change "$port")" = 0 ] \
        && [ "$(info_field shoal_ring_staged "$port")" = 0 ] && continue 2
      sleep 0.05
    done
    echo "bench.sh: the node on port $port does not see a settled ring of $count members after $limit s"
    tail -n 5 "$work"/cluster-*.log; exit 1
  done
}

# keys_sum PORT...: the keys the nodes hold, summed (replicas).
keys_sum() { local port t=0; for port in "$@"; do t=$((t + $(local_keys "$port"))); done; echo "$t"; }

# join_node PORT RATE: starts a node with the cluster's seeds (its join is
# committed at once), RATE its transfer-rate ("" for the default), and
# waits until the first node sees the change in progress. Sets JOIN_T0 (its
# start) and JOIN_PID.
join_node() {
  local port=$1 rate=$2
  CLUSTER_ENV=()
  [ -n "$rate" ] && CLUSTER_ENV=(SHOAL_TRANSFER_RATE="$rate")
  JOIN_T0=$(date +%s.%N)
  start_cluster_node "$port"
  JOIN_PID=$!
  CLUSTER_ENV=()
  wait_up "$port" "$JOIN_PID"
  for _ in $(seq 600); do
    [ "$(info_field shoal_ring_change "$BASE_CLUSTER")" != 0 ] && return 0
    sleep 0.05
  done
  echo "bench.sh: no change in progress 30 s after the node on $port started"; tail -n 5 "$work/cluster-$port.log"; exit 1
}

# watch_change FILE: in the background, writes the time into FILE once the
# first node sees no change in progress. Sets WATCHER.
watch_change() {
  (
    while [ "$(info_field shoal_ring_change "$BASE_CLUSTER")" != 0 ]; do sleep 0.1; done
    date +%s.%N >"$1"
  ) &
  WATCHER=$!
  pids+=("$WATCHER")
}

# wait_change FILE SECONDS: until the watcher wrote FILE.
wait_change() {
  for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "bench.sh: the change is still in progress after $2 s more"; exit 1
}

BASE_CLUSTER=$((BASE + 2))

rebalance() {
  local ports nodes pipeline test f before during redis_rps t0 t1 t_before=0 replicas moved bytes moved0 bytes0
  local rate in_change c0 c1 p4 p5 secs
  rm -rf "$work"/data-cluster-*
  CLUSTER_ENV=()
  start_redis redis "$BASE" --appendonly no
  start_cluster
  read -ra ports <<<"${PORTS[cluster/one]}"
  read -ra nodes <<<"${PIDS[cluster/one]}"
  settle 3 60 "${ports[@]}"
  t0=$(date +%s.%N)
  load_keys "${ports[0]}" "$RB_KEYS"
  t1=$(date +%s.%N)
  echo "rebalance, $CORES cores, $(date -u +%Y-%m-%d): a three-node cluster (N=3, R=W=2), then a fourth node joins"
  printf 'loaded %d keys (100-byte values) through the first node in %.1f s\n' "$RB_KEYS" "$(ratio "($t1 - $t0)" 1)"
  for pipeline in 1 16; do
    for test in set get; do
      measure "$test" "$pipeline" redis
      cp "$(file_of redis)" "$work/redis-$test-$pipeline"
      t0=$(date +%s.%N)
      measure "$test" "$pipeline" cluster/one
      t1=$(date +%s.%N)
      t_before=$(ratio "$t_before + $t1 - $t0" 1)
      cp "$(file_of cluster/one)" "$work/before-$test-$pipeline"
    done
  done
  replicas=$(keys_sum "${ports[@]}")
  moved0=$(info_sum shoal_transfer_keys "${ports[@]}"); bytes0=$(info_sum shoal_transfer_bytes "${ports[@]}")
  # ~180 bytes a key on the wire (key, value, version); the transfers
  # should outlast the measurements, which took t_before before.
  rate=${RB_RATE:-$(echo "$replicas / 4 * 180 / (2.5 * $t_before)" | bc)}
  p4=$((BASE + 5))
  join_node "$p4" "$rate"
  watch_change "$work/rb-end4"
  PIDS[cluster/one]="${nodes[*]} $JOIN_PID"; PORTS[cluster/one]="${ports[*]} $p4"
  printf 'measurements before took %.0f s; the fourth node joins with transfer-rate %s (bytes/s)\n' "$t_before" "$rate"
  echo "redis-benchmark -c 50 -d 64 -r 100000 through the first node; median of $ROUNDS rounds; x_before = rps during / rps before;"
  echo "x_redis = rps / redis-server's; p50, p99, cpu (server CPU µs per request, all nodes, the joining one included) during;"
  echo "in_change = the change still in progress when the measurement ended (it was when it began)"
  printf '%-10s %11s %11s %9s %11s %9s %9s %8s %8s %8s %10s\n' test before_rps during_rps x_before redis_rps \
    x_redis_bef x_redis_dur p50_ms p99_ms cpu_us in_change
  for pipeline in 1 16; do
    for test in set get; do
      c0=$(info_field shoal_ring_change "${ports[0]}")
      measure "$test" "$pipeline" cluster/one
      c1=$(info_field shoal_ring_change "${ports[0]}")
      in_change=yes
      [ "$c0" != 0 ] && [ "$c1" != 0 ] || in_change="NO (ended)"
      f=$(file_of cluster/one)
      before=$(col "$work/before-$test-$pipeline" 1); during=$(col "$f" 1); redis_rps=$(col "$work/redis-$test-$pipeline" 1)
      printf '%-10s %11.0f %11.0f %9.2f %11.0f %9.2f %9.2f %8s %8s %8s %10s\n' "${test^^}/P$pipeline" "$before" "$during" \
        "$(ratio "$during" "$before")" "$redis_rps" "$(ratio "$before" "$redis_rps")" "$(ratio "$during" "$redis_rps")" \
        "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)" "$in_change"
    done
  done
  wait_change "$work/rb-end4" 3600
  settle 4 120 "${ports[@]}" "$p4"
  secs=$(ratio "($(cat "$work/rb-end4") - $JOIN_T0)" 1)
  moved=$(($(info_sum shoal_transfer_keys "${ports[@]}" "$p4") - moved0))
  bytes=$(($(info_sum shoal_transfer_bytes "${ports[@]}" "$p4") - bytes0))
  printf 'join of the fourth node, under the load above: %d keys moved, ideal %d (replicas held before %d / 4): ratio %.3f (goal <= 1.1)\n' \
    "$moved" $((replicas / 4)) "$replicas" "$(ratio "$moved" "($replicas / 4)")"
  printf '  %.1f MiB in %.1f s from its start until the ring settled: %.2f MiB/s, %.0f keys/s (transfer-rate %.2f MiB/s)\n' \
    "$(ratio "$bytes" 1048576)" "$secs" "$(ratio "$bytes / 1048576" "$secs")" "$(ratio "$moved" "$secs")" "$(ratio "$rate" 1048576)"
  # The fifth node joins the idle cluster at the default rate. The key set
  # has not changed (the SETs overwrite), so the replicas are as before;
  # the old owners' copies the fourth node took over are dropped later
  # (transfer-drop-delay), so the nodes' counts would overstate them now.
  p5=$((BASE + 6))
  moved0=$(info_sum shoal_transfer_keys "${ports[@]}" "$p4"); bytes0=$(info_sum shoal_transfer_bytes "${ports[@]}" "$p4")
  join_node "$p5" ""
  watch_change "$work/rb-end5"
  wait_change "$work/rb-end5" 3600
  settle 5 120 "${ports[@]}" "$p4" "$p5"
  secs=$(ratio "($(cat "$work/rb-end5") - $JOIN_T0)" 1)
  moved=$(($(info_sum shoal_transfer_keys "${ports[@]}" "$p4" "$p5") - moved0))
  bytes=$(($(info_sum shoal_transfer_bytes "${ports[@]}" "$p4" "$p5") - bytes0))
  printf 'join of a fifth node, idle, default transfer-rate: %d keys moved, ideal %d (replicas %d / 5): ratio %.3f\n' \
    "$moved" $((replicas / 5)) "$replicas" "$(ratio "$moved" "($replicas / 5)")"
  printf '  %.1f MiB in %.1f s from its start until the ring settled: %.2f MiB/s, %.0f keys/s\n' \
    "$(ratio "$bytes" 1048576)" "$secs" "$(ratio "$bytes / 1048576" "$secs")" "$(ratio "$moved" "$secs")"
}

antientropy() {
  ae_repair
  stop_all
  echo
  ae_load
}

case "$MODE" in
  single | cluster) compare ;;
  sweep) sweep ;;
  degraded) degraded ;;
  antientropy) antientropy ;;
  rebalance) rebalance ;;
  all)
    compare
    # The sweep runs alone: the servers above would take their share of
    # the cores even when idle (the cluster gossips).
    stop_all
    echo
    sweep
    stop_all
    echo
    degraded
    stop_all
    echo
    antientropy
    stop_all
    echo
    rebalance
    ;;
esac
