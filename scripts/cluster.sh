#!/usr/bin/env bash
# Starts, stops, grows, shrinks and shows the loopback example in
# conf/cluster/: three nodes, or up to five with nodes 4 and 5.
#
#   scripts/cluster.sh start  [NODE...]   start nodes (default: 1 2 3) and wait until every one
#                                         sees a settled ring holding all of them
#   scripts/cluster.sh add    NODE...     start nodes that are not members yet (e.g. 4 5): they join the
#                                         running cluster through their seeds (the join is committed at
#                                         once); waits until the ring is settled with them, printing the
#                                         transfers' progress meanwhile
#   scripts/cluster.sh remove NODE...     have running members leave gracefully (shoal leave --now: they
#                                         hand their partitions over first), wait until the ring is
#                                         settled without them, then stop them (SIGTERM) and DELETE their
#                                         data directories: a node that left must not come back with its
#                                         old data; `add` brings it back later as a new, empty member
#   scripts/cluster.sh stop   [NODE...]   stop nodes with SIGTERM (default: all that ran); they stay
#                                         members (a restart brings them back with their data)
#   scripts/cluster.sh status [NODE...]   which nodes run, and the cluster as one sees it
#
# "Settled" means the node's INFO cluster shows the ring's members
# (shoal_ring_members) as wanted, no change in progress (shoal_ring_change
# 0) and none staged (shoal_ring_staged 0). Waits give up after
# CLUSTER_WAIT seconds (default 300; a start waits at most 30 s).
#
# Data, logs and pids go under $CLUSTER_DIR (default ./.shoal-cluster).
# Node i serves clients on port 6378+i and peers on 16378+i.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CLUSTER_DIR:-./.shoal-cluster}
BIN=${CARGO_TARGET_DIR:-target}/release/shoal
WAIT=${CLUSTER_WAIT:-300}
action=${1:-status}
shift || true
nodes=("$@")
if [ ${#nodes[@]} -eq 0 ]; then
  case "$action" in
    add | remove) echo "usage: scripts/cluster.sh $action NODE..."; exit 2 ;;
  esac
  nodes=(1 2 3)
  # Stop and status also cover nodes 4 and 5 once they have run.
  if [ "$action" != start ]; then
    for n in 4 5; do [ -d "$DIR/node$n" ] && nodes+=("$n"); done
  fi
fi

port_of() { echo $((6378 + $1)); }
pid_of() { cat "$DIR/node$1.pid" 2>/dev/null || true; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

for n in "${nodes[@]}"; do
  [ -f "conf/cluster/node$n.toml" ] || { echo "cluster.sh: no conf/cluster/node$n.toml"; exit 2; }
done

# info PORT FIELD: one field of the node's INFO cluster (empty if it does
# not answer).
info() { redis-cli -p "$1" info cluster 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'; }

# settled PORT OP COUNT: the node's ring has no change in progress or
# staged, and its member count compares to COUNT by OP (-ge, -eq).
settled() {
  local m c s
  m=$(info "$1" shoal_ring_members); c=$(info "$1" shoal_ring_change); s=$(info "$1" shoal_ring_staged)
  [ -n "$m" ] && [ "$m" "$2" "$3" ] && [ "$c" = 0 ] && [ "$s" = 0 ]
}

# progress PORT: one line on the change as the node sees it, with the
# keys received by transfers so far, summed over the running nodes.
progress() {
  local copies keys=0 n k
  copies=$("$BIN" plan -p "$1" 2>/dev/null | sed -n 's/.* \([0-9]*\) partition copies to make (\([0-9]*\) done).*/\2 of \1/p' || true)
  for n in 1 2 3 4 5; do
    running "$n" || continue
    k=$(info "$(port_of "$n")" shoal_transfer_keys); keys=$((keys + ${k:-0}))
  done
  printf '  %s epoch %s, ring members %s, change %s, staged %s, partition copies done: %s; keys received by transfers: %s\n' \
    "$(date +%T)" "$(info "$1" shoal_ring_epoch)" "$(info "$1" shoal_ring_members)" "$(info "$1" shoal_ring_change)" \
    "$(info "$1" shoal_ring_staged)" "${copies:-none in progress}" "$keys"
}

# wait_settled PORT OP COUNT SECONDS: until settled, a progress line every
# two seconds while a change is in progress or staged.
wait_settled() {
  local port=$1 op=$2 count=$3 limit=$4 i
  for i in $(seq $((limit * 10))); do
    settled "$port" "$op" "$count" && return 0
    if [ $((i % 20)) = 0 ] && { [ "$(info "$port" shoal_ring_change)" != 0 ] || [ "$(info "$port" shoal_ring_staged)" != 0 ]; }; then
      progress "$port"
    fi
    sleep 0.1
  done
  return 1
}

# launch NODE: starts the node in the background on its data directory.
launch() {
  local n=$1 port
  port=$(port_of "$n")
  "$BIN" --config "conf/cluster/node$n.toml" --data-dir "$DIR/node$n" >>"$DIR/node$n.log" 2>&1 &
  echo $! >"$DIR/node$n.pid"
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    running "$n" || { echo "node $n failed to start; see $DIR/node$n.log"; tail -5 "$DIR/node$n.log"; exit 1; }
    sleep 0.1
  done
  echo "node $n: pid $(pid_of "$n"), clients on 127.0.0.1:$port, data in $DIR/node$n"
}

# stop_node NODE: SIGTERM, and wait until it is gone.
stop_node() {
  local n=$1 pid
  if running "$n"; then
    pid=$(pid_of "$n")
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "node $n stopped"
  else
    echo "node $n not running"
  fi
  rm -f "$DIR/node$n.pid"
}

# observer NODE...: a running node of the example not among those given.
observer() {
  local n
  for n in 1 2 3 4 5; do
    in_list "$n" "$@" && continue
    [ -f "conf/cluster/node$n.toml" ] && running "$n" && { echo "$n"; return 0; }
  done
  return 1
}

case "$action" in
  start)
    # It waits until the nodes' ring holds at least the example's three
    # members (or as many as were started).
    want=$(( ${#nodes[@]} > 3 ? ${#nodes[@]} : 3 ))
    cargo build --release --quiet
    mkdir -p "$DIR"
    for n in "${nodes[@]}"; do
      if running "$n"; then echo "node $n already running (pid $(pid_of "$n"))"; continue; fi
      launch "$n"
    done
    for n in "${nodes[@]}"; do
      wait_settled "$(port_of "$n")" -ge "$want" 30 \
        || echo "node $n does not see a settled ring of $want members yet (another node down?); see $DIR/node$n.log"
    done
    ;;
  add)
    ob=$(observer "${nodes[@]}") || { echo "cluster.sh: no member is running to join (scripts/cluster.sh start first)"; exit 1; }
    for n in "${nodes[@]}"; do
      running "$n" && { echo "cluster.sh: node $n is already running"; exit 1; }
      if [ -d "$DIR/node$n" ]; then
        echo "cluster.sh: $DIR/node$n exists: node $n was a member (scripts/cluster.sh start $n restarts it)"; exit 1
      fi
    done
    cargo build --release --quiet
    before=$(info "$(port_of "$ob")" shoal_ring_members)
    want=$((before + ${#nodes[@]}))
    echo "ring of $before members as node $ob sees it; adding ${nodes[*]}"
    for n in "${nodes[@]}"; do launch "$n"; done
    # The join is committed once the claimant takes it: wait for that.
    for _ in $(seq 100); do
      [ "$(info "$(port_of "$ob")" shoal_ring_change)" != 0 ] || settled "$(port_of "$ob")" -ge "$want" && break
      sleep 0.1
    done
    echo "plan (as node $ob sees it):"
    "$BIN" plan -p "$(port_of "$ob")" | sed 's/^/  /'
    t0=$(date +%s)
    for n in "$ob" "${nodes[@]}"; do
      wait_settled "$(port_of "$n")" -ge "$want" "$WAIT" \
        || { echo "cluster.sh: node $n does not see a settled ring of $want members after ${WAIT} s"; progress "$(port_of "$n")"; exit 1; }
    done
    echo "ring settled with $want members after $(( $(date +%s) - t0 )) s:"
    "$BIN" status -p "$(port_of "$ob")" | sed 's/^/  /'
    ;;
  remove)
    ob=$(observer "${nodes[@]}") || { echo "cluster.sh: no other member is running to hand over to"; exit 1; }
    for n in "${nodes[@]}"; do running "$n" || { echo "cluster.sh: node $n is not running (a member gone for good: shoal remove)"; exit 1; }; done
    before=$(info "$(port_of "$ob")" shoal_ring_members)
    want=$((before - ${#nodes[@]}))
    echo "ring of $before members as node $ob sees it; node(s) ${nodes[*]} leave"
    for n in "${nodes[@]}"; do
      printf 'node %s: ' "$n"
      "$BIN" leave -p "$(port_of "$n")" --now
    done
    for _ in $(seq 100); do
      [ "$(info "$(port_of "$ob")" shoal_ring_change)" != 0 ] || settled "$(port_of "$ob")" -eq "$want" && break
      sleep 0.1
    done
    echo "plan (as node $ob sees it):"
    "$BIN" plan -p "$(port_of "$ob")" | sed 's/^/  /'
    t0=$(date +%s)
    wait_settled "$(port_of "$ob")" -eq "$want" "$WAIT" \
      || { echo "cluster.sh: node $ob does not see a settled ring of $want members after ${WAIT} s; nothing stopped"; progress "$(port_of "$ob")"; exit 1; }
    echo "ring settled with $want members after $(( $(date +%s) - t0 )) s"
    for n in "${nodes[@]}"; do
      stop_node "$n"
      rm -rf "$DIR/node$n"
      echo "node $n: data directory $DIR/node$n deleted (it left the cluster; its log stays)"
    done
    "$BIN" status -p "$(port_of "$ob")" | sed 's/^/  /'
    ;;
  stop)
    for n in "${nodes[@]}"; do stop_node "$n"; done
    ;;
  status)
    for n in "${nodes[@]}"; do
      if running "$n"; then echo "node $n: running (pid $(pid_of "$n")), clients on 127.0.0.1:$(port_of "$n")"
      else echo "node $n: stopped"; fi
    done
    for n in "${nodes[@]}"; do
      if running "$n"; then
        echo "cluster as node $n sees it:"
        redis-cli -p "$(port_of "$n")" --no-raw shoal.status
        break
      fi
    done
    ;;
  *)
    echo "usage: scripts/cluster.sh start|add|remove|stop|status [NODE...]"; exit 2 ;;
esac
