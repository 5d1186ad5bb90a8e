#!/usr/bin/env bash
# Starts, stops and shows the loopback example in conf/cluster/: three
# nodes, or five with nodes 4 and 5.
#
#   scripts/cluster.sh start  [NODE...]   start nodes (default: 1 2 3)
#   scripts/cluster.sh stop   [NODE...]   stop nodes with SIGTERM (default: all that ran)
#   scripts/cluster.sh status [NODE...]   which nodes run, and the cluster as one sees it
#
# Data, logs and pids go under $CLUSTER_DIR (default ./.shoal-cluster).
# Node i serves clients on port 6378+i and peers on 16378+i.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CLUSTER_DIR:-./.shoal-cluster}
BIN=${CARGO_TARGET_DIR:-target}/release/shoal
action=${1:-status}
shift || true
nodes=("$@")
if [ ${#nodes[@]} -eq 0 ]; then
  nodes=(1 2 3)
  # Stop and status also cover nodes 4 and 5 once they have run.
  if [ "$action" != start ]; then
    for n in 4 5; do [ -d "$DIR/node$n" ] && nodes+=("$n"); done
  fi
fi
# A start waits until the nodes know at least this many members.
want=$(( ${#nodes[@]} > 3 ? ${#nodes[@]} : 3 ))

port_of() { echo $((6378 + $1)); }
pid_of() { cat "$DIR/node$1.pid" 2>/dev/null || true; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

for n in "${nodes[@]}"; do
  [ -f "conf/cluster/node$n.toml" ] || { echo "cluster.sh: no conf/cluster/node$n.toml"; exit 2; }
done

case "$action" in
  start)
    cargo build --release --quiet
    mkdir -p "$DIR"
    for n in "${nodes[@]}"; do
      if running "$n"; then echo "node $n already running (pid $(pid_of "$n"))"; continue; fi
      "$BIN" --config "conf/cluster/node$n.toml" --data-dir "$DIR/node$n" >>"$DIR/node$n.log" 2>&1 &
      echo $! >"$DIR/node$n.pid"
    done
    for n in "${nodes[@]}"; do
      port=$(port_of "$n")
      for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        running "$n" || { echo "node $n failed to start; see $DIR/node$n.log"; tail -5 "$DIR/node$n.log"; exit 1; }
        sleep 0.1
      done
      echo "node $n: pid $(pid_of "$n"), clients on 127.0.0.1:$port, data in $DIR/node$n"
    done
    # Ready once every node started has joined the cluster and knows at
    # least the example's three members (or as many as were started).
    members() { redis-cli -p "$1" info cluster 2>/dev/null | sed -n 's/^shoal_members:\([0-9]*\).*/\1/p'; }
    for n in "${nodes[@]}"; do
      port=$(port_of "$n")
      for _ in $(seq 100); do
        [ "$(members "$port")" -ge "$want" ] 2>/dev/null && break
        sleep 0.1
      done
      [ "$(members "$port")" -ge "$want" ] 2>/dev/null \
        || echo "node $n does not know $want members yet (another node down?); see $DIR/node$n.log"
    done
    ;;
  stop)
    for n in "${nodes[@]}"; do
      if running "$n"; then
        pid=$(pid_of "$n")
        kill -TERM "$pid"
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "node $n stopped"
      else
        echo "node $n not running"
      fi
      rm -f "$DIR/node$n.pid"
    done
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
    echo "usage: scripts/cluster.sh start|stop|status [NODE...]"; exit 2 ;;
esac
