#!/usr/bin/env bash
# A real two-node Slurm cluster with accounting, on this one machine, for tests and demos.
#
#   scripts/slurm-local.sh up      install (Debian packages) if missing, configure, start, wait
#   scripts/slurm-local.sh status  print what runs and what sinfo says; exit 0 when usable
#   scripts/slurm-local.sh down    stop every daemon this script started, by pid file
#
# Idempotent: `up` twice leaves one of each daemon; a changed configuration restarts the
# Slurm daemons. Debian builds slurmd with multiple-slurmd support, so node1 and node2
# are two slurmd processes on loopback (NodeAddr=127.0.0.1, one port each), which lets
# `srun -N2` and a 2-node torchrun run across "nodes" on one host. MariaDB + slurmdbd
# make `sacct` answer as on a production cluster.
#
# Exit codes: 0 done, 1 a daemon failed to come up (its log tail is printed),
# 2 this machine cannot host the cluster (not root, no apt-get, unknown command).
set -euo pipefail

CLUSTER_NAME=${SLURM_LOCAL_CLUSTER:-scalectl}
CPUS_PER_NODE=${SLURM_LOCAL_CPUS_PER_NODE:-2}
NODE_COUNT=2
STATE_DIR=${SLURM_LOCAL_STATE:-/var/lib/scalectl-slurm}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/scalectl-slurm
MYSQL_SOCKET=$RUN_DIR/mysqld.sock
MYSQL_PID=$RUN_DIR/mysqld.pid
MYSQL_DATA=$STATE_DIR/mysql
DB_PASSWORD_FILE=$STATE_DIR/db-password
WAIT_S=${SLURM_LOCAL_WAIT_S:-90}
PACKAGES=(slurm-wlm slurm-client slurmdbd munge mariadb-server)

say() { printf 'slurm-local: %s\n' "$*"; }
die() { printf 'slurm-local: %s\n' "$*" >&2; exit "${2:-1}"; }

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

require_root() {
  if [ "$(id -u)" != 0 ]; then
    die "must run as root to install and start Slurm daemons (try: sudo $0 $1); Slurm tests will skip without it" 2
  fi
}

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: this script installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server; install them by hand on this system" 2
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start daemons here (no init system in containers/CI).
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE_DIR/apt.log" 2>&1 \
    || { apt-get update -q >>"$STATE_DIR/apt.log" 2>&1 \
         && apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE_DIR/apt.log" 2>&1; } \
    || { rm -f /usr/sbin/policy-rc.d; tail -20 "$STATE_DIR/apt.log" >&2; die "apt-get install failed (log: $STATE_DIR/apt.log)" 2; }
  rm -f /usr/sbin/policy-rc.d
}

render_slurm_conf() {
  local host
  host=$(hostname -s)
  cat <<EOF
# Written by scalectl scripts/slurm-local.sh: a 2-node cluster on loopback. Do not edit.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
KillWait=15
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=20
StateSaveLocation=$STATE_DIR/slurmctld
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdPidFile=$RUN_DIR/slurmd.%n.pid
SlurmdSpoolDir=$STATE_DIR/slurmd.%n
SlurmdLogFile=$LOG_DIR/slurmd.%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=node[1-$NODE_COUNT] NodeHostname=$host NodeAddr=127.0.0.1 Port=[17001-1700$NODE_COUNT] CPUs=$CPUS_PER_NODE State=UNKNOWN
PartitionName=debug Nodes=node[1-$NODE_COUNT] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

render_slurmdbd_conf() {
  cat <<EOF
# Written by scalectl scripts/slurm-local.sh. Do not edit.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$(cat "$DB_PASSWORD_FILE")
StorageLoc=slurm_acct_db
EOF
}

# Write $2 to $1 only when different; return 0 when it changed.
write_if_changed() {
  local path=$1 content=$2 mode=${3:-644}
  if [ -f "$path" ] && [ "$(cat "$path")" == "$content" ]; then
    return 1
  fi
  printf '%s\n' "$content" >"$path"
  chmod "$mode" "$path"
  return 0
}

mark_started() { touch "$STATE_DIR/started.$1"; }

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

start_munge() {
  if pid_alive /run/munge/munged.pid; then return 0; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0600 /etc/munge/munge.key
  fi
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for munged 10 munge -n || die "munged did not start (see /var/log/munge/munged.log)"
  mark_started munged
}

start_mariadb() {
  if pid_alive "$MYSQL_PID"; then return 0; fi
  if [ ! -d "$MYSQL_DATA/mysql" ]; then
    say "initialising MariaDB data directory"
    mkdir -p "$MYSQL_DATA"
    chown mysql:mysql "$MYSQL_DATA"
    mariadb-install-db --user=mysql --datadir="$MYSQL_DATA" --auth-root-authentication-method=socket \
      >"$STATE_DIR/mariadb-install.log" 2>&1 || { tail -20 "$STATE_DIR/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  mkdir -p "$RUN_DIR"
  chown mysql:mysql "$RUN_DIR"
  chmod 0755 "$RUN_DIR"
  say "starting MariaDB (socket $MYSQL_SOCKET, port 3306 on loopback)"
  # Detach fully: setsid + redirected fds so the caller's pipes are not held open.
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$MYSQL_DATA" --socket="$MYSQL_SOCKET" \
    --pid-file="$MYSQL_PID" --bind-address=127.0.0.1 --port=3306 \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --log-error="$LOG_DIR/mariadb.log" \
    </dev/null >/dev/null 2>&1 &
  wait_for mariadb 60 mariadb --socket="$MYSQL_SOCKET" -e 'select 1' \
    || { tail -20 "$LOG_DIR/mariadb.log" >&2; die "MariaDB did not start"; }
  mark_started mariadb
}

ensure_database() {
  [ -s "$DB_PASSWORD_FILE" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASSWORD_FILE"; chmod 600 "$DB_PASSWORD_FILE"; }
  local password
  password=$(cat "$DB_PASSWORD_FILE")
  mariadb --socket="$MYSQL_SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

stop_pidfile() { # name, pidfile
  local name=$1 pidfile=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

stop_slurm_daemons() {
  for n in $(seq 1 $NODE_COUNT); do stop_pidfile "slurmd node$n" "$RUN_DIR/slurmd.node$n.pid"; done
  stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
  stop_pidfile slurmdbd "$RUN_DIR/slurmdbd.pid"
}

start_slurmdbd() {
  if pid_alive "$RUN_DIR/slurmdbd.pid"; then return 0; fi
  say "starting slurmdbd"
  /usr/sbin/slurmdbd
  wait_for slurmdbd 60 sacctmgr -n list cluster \
    || { tail -20 "$LOG_DIR/slurmdbd.log" >&2; die "slurmdbd did not start"; }
  mark_started slurmdbd
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
  fi
  # Accounting associations: root's default account, so every submission is accounted.
  sacctmgr -n -P list account format=account | grep -qx scalectl \
    || sacctmgr -i add account scalectl cluster="$CLUSTER_NAME" description=local org=scalectl >/dev/null
  sacctmgr -n -P list user format=user | grep -qx root \
    || sacctmgr -i add user root account=scalectl cluster="$CLUSTER_NAME" >/dev/null || true
}

start_slurmctld() {
  if pid_alive "$RUN_DIR/slurmctld.pid"; then return 0; fi
  say "starting slurmctld"
  /usr/sbin/slurmctld
  wait_for slurmctld 30 scontrol ping \
    || { tail -20 "$LOG_DIR/slurmctld.log" >&2; die "slurmctld did not start"; }
  mark_started slurmctld
}

start_slurmd() {
  local node=$1
  if pid_alive "$RUN_DIR/slurmd.$node.pid"; then return 0; fi
  say "starting slurmd -N $node"
  mkdir -p "$STATE_DIR/slurmd.$node"
  /usr/sbin/slurmd -N "$node"
  mark_started "slurmd.$node"
}

nodes_idle() {
  local states
  states=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u)
  for n in $(seq 1 $NODE_COUNT); do
    echo "$states" | grep -Eq "^node$n (idle|mix|alloc)$" || return 1
  done
}

resume_nodes() {
  # A node left DOWN/DRAIN by an earlier unclean stop would never come back by itself.
  local bad
  bad=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /down|drain|drng|fail/ {print $1}' | sort -u | paste -sd, -)
  [ -n "$bad" ] && scontrol update nodename="$bad" state=resume >/dev/null 2>&1 || true
}

cmd_up() {
  require_root up
  mkdir -p "$STATE_DIR/slurmctld" "$LOG_DIR" "$RUN_DIR" "$CONF_DIR"
  install_packages
  start_munge
  start_mariadb
  ensure_database
  local changed=0
  write_if_changed "$CONF_DIR/slurm.conf" "$(render_slurm_conf)" 644 && changed=1
  write_if_changed "$CONF_DIR/slurmdbd.conf" "$(render_slurmdbd_conf)" 600 && changed=1
  if [ $changed = 1 ]; then
    say "configuration written to $CONF_DIR; (re)starting Slurm daemons"
    stop_slurm_daemons
  fi
  start_slurmdbd
  start_slurmctld
  for n in $(seq 1 $NODE_COUNT); do start_slurmd "node$n"; done
  local deadline=$((SECONDS + WAIT_S))
  until nodes_idle; do
    resume_nodes
    if [ $SECONDS -ge $deadline ]; then
      sinfo -N >&2 || true
      tail -5 "$LOG_DIR"/slurmd.node*.log >&2 || true
      die "nodes did not become idle within ${WAIT_S}s"
    fi
    sleep 0.5
  done
  wait_for sacct 30 sacct -n -X --starttime=now-1minute || die "sacct does not answer (see $LOG_DIR/slurmdbd.log)"
  say "up: $(sinfo -h -N -o '%N %t' | sort -u | paste -sd' ' -), sacct answers"
}

cmd_down() {
  require_root down
  stop_slurm_daemons
  if [ -e "$STATE_DIR/started.mariadb" ]; then stop_pidfile mariadb "$MYSQL_PID"; fi
  if [ -e "$STATE_DIR/started.munged" ]; then stop_pidfile munged /run/munge/munged.pid; fi
  rm -f "$STATE_DIR"/started.*
  say "down"
}

cmd_status() {
  local ok=0
  for spec in "munged:/run/munge/munged.pid" "mariadb:$MYSQL_PID" "slurmdbd:$RUN_DIR/slurmdbd.pid" \
              "slurmctld:$RUN_DIR/slurmctld.pid" "slurmd.node1:$RUN_DIR/slurmd.node1.pid" \
              "slurmd.node2:$RUN_DIR/slurmd.node2.pid"; do
    local name=${spec%%:*} pidfile=${spec#*:}
    if pid_alive "$pidfile"; then say "$name running (pid $(cat "$pidfile"))"; else say "$name not running"; ok=1; fi
  done
  if command -v sinfo >/dev/null && sinfo -h -N -o '%N %t' >/dev/null 2>&1; then
    sinfo -N
    nodes_idle || ok=1
  else
    ok=1
  fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 {up|down|status}" 2 ;;
esac
