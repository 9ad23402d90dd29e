#!/usr/bin/env bash
# A highly available PostgreSQL for tests, on one machine: one etcd member
# and three Patroni nodes (PostgreSQL 15, synchronous replication with
# synchronous_mode, so a commit is acknowledged once it is on two nodes).
# Separate data directories and ports; it never touches the machine's main
# cluster on 5432. Everything it starts it stops by PID.
#
#   deploy/ha/cluster.sh start     # prints the multi-host DSN when a primary is up
#   deploy/ha/cluster.sh status    # patronictl list
#   deploy/ha/cluster.sh primary   # the primary's PostgreSQL port
#   deploy/ha/cluster.sh wait      # until all three nodes run and one is the synchronous standby
#   deploy/ha/cluster.sh stop      # stops what start started and removes its state
#
# HA_DIR (default /tmp/latchkey-ha) holds the state; HA_PORT_BASE (25430)
# moves the ports: PostgreSQL BASE+1..3, Patroni REST BASE+11..13, etcd
# BASE+20 (client) and BASE+21 (peer).
set -euo pipefail
dir=${HA_DIR:-/tmp/latchkey-ha}
base=${HA_PORT_BASE:-25430}
etcd_port=$((base + 20))
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

install() {
  local missing=()
  command -v patroni >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  [ -n "$pg_bin" ] || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
}

# as_postgres prefixes a command to run it as the postgres user
# (PostgreSQL refuses root). setpriv execs in place, so $! of a command
# started in the background is the command's own PID.
as_postgres=()
[ "$(id -u)" != 0 ] || as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env --)

node_conf() { # n
  local n=$1
  cat <<YAML
scope: latchkey-ha
namespace: /latchkey/
name: node$n
restapi:
  listen: 127.0.0.1:$((base + 10 + n))
  connect_address: 127.0.0.1:$((base + 10 + n))
etcd:
  host: 127.0.0.1:$etcd_port
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    # A crashed primary fails over to the synchronous standby at once
    # instead of restarting in place: nothing acknowledged is lost (it is
    # on the standby), and the crashed node rejoins as a replica.
    primary_start_timeout: 0
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        max_connections: 200
  initdb:
  - encoding: UTF8
  - auth: trust
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$((base + n))
  connect_address: 127.0.0.1:$((base + n))
  data_dir: $dir/node$n
  bin_dir: $pg_bin
  pgpass: $dir/pgpass$n
  authentication:
    replication: {username: postgres, password: unused}
    superuser: {username: postgres, password: unused}
  parameters:
    unix_socket_directories: $dir
YAML
}

start() {
  install
  if [ -e "$dir/etcd.pid" ]; then
    echo "cluster.sh: $dir already holds a cluster; stop it first" >&2
    exit 1
  fi
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  "${as_postgres[@]}" etcd --name ha --data-dir "$dir/etcd" --enable-v2=true \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "ha=http://127.0.0.1:$((etcd_port + 1))" >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.2; done
  for n in 1 2 3; do
    node_conf "$n" >"$dir/node$n.yml"
    chown postgres: "$dir/node$n.yml" 2>/dev/null || true
    "${as_postgres[@]}" patroni "$dir/node$n.yml" >"$dir/patroni$n.log" 2>&1 &
    echo $! >"$dir/patroni$n.pid"
    [ "$n" = 1 ] && wait_primary 60 >/dev/null # the first node bootstraps; the others clone it
  done
  wait_replicas 90
  echo "postgres://postgres@127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))/postgres?sslmode=disable&target_session_attrs=read-write"
}

# primary prints the port of the node whose REST API says it is the
# primary, or fails.
primary() {
  for n in 1 2 3; do
    if curl -sf "http://127.0.0.1:$((base + 10 + n))/primary" >/dev/null 2>&1; then
      echo $((base + n))
      return 0
    fi
  done
  return 1
}

wait_primary() { # seconds
  for _ in $(seq 1 $(($1 * 5))); do primary && return 0; sleep 0.2; done
  echo "cluster.sh: no primary after $1 s; see $dir/patroni*.log" >&2
  exit 1
}

# wait_replicas waits until both other nodes stream and one is the
# synchronous standby.
wait_replicas() { # seconds
  for _ in $(seq 1 $(($1 * 5))); do
    local sync=0 running=0
    for n in 1 2 3; do
      local role
      role=$(curl -s "http://127.0.0.1:$((base + 10 + n))/patroni" 2>/dev/null | python3 -c 'import json,sys
try: d=json.load(sys.stdin); print(d.get("role",""), d.get("state",""))
except Exception: print("")' || true)
      case $role in *running*) running=$((running + 1)) ;; esac
      curl -sf "http://127.0.0.1:$((base + 10 + n))/synchronous" >/dev/null 2>&1 && sync=$((sync + 1))
    done
    [ "$running" = 3 ] && [ "$sync" -ge 1 ] && return 0
    sleep 0.2
  done
  echo "cluster.sh: replicas not streaming after $1 s; see $dir/patroni*.log" >&2
  exit 1
}

# stop_pid sends TERM, waits up to 10 s, then KILL.
stop_pid() { # pid
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

stop() {
  [ -d "$dir" ] || return 0
  # Patroni stops its PostgreSQL on TERM; a postmaster left by a killed
  # Patroni is stopped by its own PID file (immediate shutdown).
  for n in 1 2 3; do
    [ -e "$dir/patroni$n.pid" ] && stop_pid "$(cat "$dir/patroni$n.pid")"
  done
  for n in 1 2 3; do
    local pm="$dir/node$n/postmaster.pid"
    [ -e "$pm" ] && stop_pid "$(head -n1 "$pm")"
  done
  [ -e "$dir/etcd.pid" ] && stop_pid "$(cat "$dir/etcd.pid")"
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  primary) primary ;;
  wait) wait_replicas 120 ;;
  status) "${as_postgres[@]}" patronictl -c "$dir/node1.yml" list ;;
  -h | --help | help | "") usage ;;
  *) usage >&2; exit 2 ;;
esac
