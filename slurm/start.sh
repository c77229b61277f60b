#!/usr/bin/env bash
# Start a real local Slurm cluster from Debian's packages (slurm-wlm + munge; accounting through slurmdbd and a
# private MariaDB on a unix socket, so that sacct works), as root, without systemd.
#
# Idempotent: installs what is missing, renders the config, starts only the daemons that are not running
# (restarts its own daemons when the rendered config changed), waits until every node is idle and a srun
# across all nodes works. Every daemon it starts is recorded in $SLURM_LOCAL_DIR/run/started for stop.sh.
#
#   SLURM_LOCAL_DIR         state, spool, logs, PID files, MariaDB data   (default ${TMPDIR:-/tmp}/rna-hpc-slurm)
#   SLURM_LOCAL_NODES       compute nodes; >1 starts one `slurmd -N nodeK` per node on loopback (default 1)
#   SLURM_LOCAL_CPUS        CPUs declared per node (default: nproc; several nodes oversubscribe the cores)
#   SLURM_LOCAL_ACCOUNTING  1 = slurmdbd + MariaDB (sacct works), 0 = none (sacct fails)   (default 1)
#   SLURM_LOCAL_GPUS        GPUs declared per node as generic resources (stand-in character devices, never opened;
#                           Slurm schedules and binds them, sets CUDA_VISIBLE_DEVICES)    (default 0)
#   SLURM_LOCAL_MAX_ARRAY_SIZE  MaxArraySize: larger sweeps are split into several arrays   (default 1001)
#
# Besides the default partition `debug` there is `parked`: the same nodes, State=DOWN, so jobs submitted to it queue
# and never start (submission benchmarks and tests of what reaches the queue).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/rna-hpc-slurm}
NODES=${SLURM_LOCAL_NODES:-1}
CPUS=${SLURM_LOCAL_CPUS:-$(nproc)}
ACCT=${SLURM_LOCAL_ACCOUNTING:-1}
GPUS=${SLURM_LOCAL_GPUS:-0}
MAX_ARRAY=${SLURM_LOCAL_MAX_ARRAY_SIZE:-1001}
HERE=$(cd "$(dirname "$0")" && pwd)
H=$(hostname -s)
MEM_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) * 8 / 10 / 1024)) # 80 % of RAM, declared per node
DBSOCK=$DIR/mysqlrun/mysqld.sock
DBPASS=rna-hpc-slurm # MariaDB listens on a unix socket only: the password guards nothing
export SLURM_LOCAL_DIR=$DIR

log() { echo "[rna-hpc-slurm] $*" >&2; }
die() {
  log "ERROR: $*"
  for f in "$DIR"/log/*.log "$DIR"/mysqlrun/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
  exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_NODES must be a positive integer, got '$NODES'"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_CPUS must be a positive integer, got '$CPUS'"
[[ "$ACCT" =~ ^[01]$ ]] || die "SLURM_LOCAL_ACCOUNTING must be 0 or 1, got '$ACCT'"
[[ "$GPUS" =~ ^[0-9]+$ ]] || die "SLURM_LOCAL_GPUS must be a non-negative integer, got '$GPUS'"
[[ "$MAX_ARRAY" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_MAX_ARRAY_SIZE must be a positive integer, got '$MAX_ARRAY'"

# ---- 1. packages ----------------------------------------------------------------------------------------------
pkgs=(slurm-wlm slurmctld slurmd slurm-client munge)
[ "$ACCT" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# ---- 2. directories, host names -------------------------------------------------------------------------------
mkdir -p "$DIR"/{state,spool,log,run}
chmod 755 "$DIR"
if [ "$NODES" -gt 1 ]; then NODE_NAMES=$(seq -f 'node%g' -s ' ' 1 "$NODES"); else NODE_NAMES=$H; fi
# slurmctld resolves its own name; job tasks resolve node names (MASTER_ADDR = first node of SLURM_NODELIST)
for n in $H $NODE_NAMES; do
  getent hosts "$n" >/dev/null || echo "127.0.0.1 $n # rna-hpc-slurm" >>/etc/hosts
done

# ---- 3. config ------------------------------------------------------------------------------------------------
GRES=""
[ "$GPUS" -gt 0 ] && GRES=" Gres=gpu:$GPUS"
node_lines() {
  if [ "$NODES" -gt 1 ]; then
    for k in $(seq 1 "$NODES"); do
      echo "NodeName=node$k NodeHostname=$H NodeAddr=127.0.0.1 Port=$((17000 + k)) CPUs=$CPUS RealMemory=$MEM_MB$GRES State=UNKNOWN"
    done
  else
    echo "NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB$GRES State=UNKNOWN"
  fi
}
# GPUs as generic resources: one stand-in character device per GPU (major 195 as NVIDIA's), shared by the nodes
GPU_DIR=$DIR/dev
new_gres=""
if [ "$GPUS" -gt 0 ]; then
  mkdir -p "$GPU_DIR"
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$GPU_DIR/nvidia$i" ] || { rm -f "$GPU_DIR/nvidia$i"; mknod "$GPU_DIR/nvidia$i" c 195 "$i"; }
  done
  new_gres="# Rendered by slurm/start.sh: stand-in devices, never opened
AutoDetect=off
Name=gpu File=$GPU_DIR/nvidia[0-$((GPUS - 1))]"
fi
if [ "$ACCT" = 1 ]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$H"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi
new_conf=$(
  cat <<CONF
# Rendered by slurm/start.sh: a single-host test cluster; root, no systemd, no cgroups.
ClusterName=local
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again only after cred_expire (default 120 s).
AuthInfo=cred_expire=10
MpiDefault=none
MaxArraySize=$MAX_ARRAY
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Defaults (batch_sched_delay=3, sched_interval=60) delay a start by up to 3 s and a requeued job by up to 60 s.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
# submitit ignores SIGTERM: a cancelled or requeued job dies only after KillWait (default 30 s).
KillWait=5
# Reject at sbatch time a job the cluster can never run (otherwise it pends forever, Reason=PartitionConfig).
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
$ACCT_LINES
JobCompType=jobcomp/none
$([ "$GPUS" -gt 0 ] && echo "GresTypes=gpu")
$(node_lines)
# One partition with every node: it serves single-node jobs and multi-node jobs alike.
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# The same nodes, never scheduling: what is submitted there stays queued (submission tests and benchmarks).
PartitionName=parked Nodes=ALL Default=NO MaxTime=INFINITE State=DOWN
CONF
)
new_dbd=$(
  cat <<CONF
# Rendered by slurm/start.sh
AuthType=auth/munge
DbdHost=$H
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
CONF
)
changed=0
[ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" = "$new_conf" ] || changed=1
[ "$(cat /etc/slurm/gres.conf 2>/dev/null)" = "$new_gres" ] || changed=1
if [ "$ACCT" = 1 ] && [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$new_dbd" ]; then changed=1; fi
if [ "$changed" = 1 ] && [ -s "$DIR/run/started" ]; then
  log "config changed: restarting the daemons started before"
  bash "$HERE/stop.sh"
fi
write_conf() { # write_conf PATH MODE CONTENT: temp file in the same dir, then rename
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  printf '%s\n' "$3" >"$tmp"
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}
mkdir -p /etc/slurm
[ "$changed" = 1 ] && write_conf /etc/slurm/slurm.conf 644 "$new_conf"
if [ "$changed" = 1 ]; then
  if [ -n "$new_gres" ]; then write_conf /etc/slurm/gres.conf 644 "$new_gres"; else rm -f /etc/slurm/gres.conf; fi
fi
# slurmdbd refuses a config readable by others
[ "$ACCT" = 1 ] && [ "$changed" = 1 ] && write_conf /etc/slurm/slurmdbd.conf 600 "$new_dbd"

# ---- helpers --------------------------------------------------------------------------------------------------
alive() { # alive COMM PIDFILE: is the process in PIDFILE running under that command name?
  [ -s "$2" ] && [ "$(cat "/proc/$(cat "$2")/comm" 2>/dev/null)" = "$1" ]
}
record() { grep -qxF "$1 $2" "$DIR/run/started" 2>/dev/null || echo "$1 $2" >>"$DIR/run/started"; }
wait_for() { # wait_for SECONDS WHAT CMD...
  local t=$1 what=$2
  shift 2
  for _ in $(seq 1 $((t * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "timed out after ${t}s waiting for $what"
}

# ---- 4. munge -------------------------------------------------------------------------------------------------
# munged refuses to start unless the key is owned by munge and readable by nobody else.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge
chmod 600 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! alive munged /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --force # --force: reuse a stale socket left by a killed munged
  record munged /run/munge/munged.pid
fi
wait_for 10 munge sh -c 'munge -n | unmunge'

# ---- 5. MariaDB + slurmdbd ------------------------------------------------------------------------------------
if [ "$ACCT" = 1 ]; then
  mkdir -p "$DIR/mysql" "$DIR/mysqlrun"
  chown mysql:mysql "$DIR/mysql" "$DIR/mysqlrun" # mariadbd (as mysql) exits silently in a root-owned dir
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
  fi
  if ! alive mariadbd "$DIR/mysqlrun/mysqld.pid"; then
    rm -f "$DIR/mysqlrun/mysqld.pid"
    # own instance: no TCP port, socket under $DIR; lock wait as slurmdbd recommends
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --socket="$DBSOCK" \
      --pid-file="$DIR/mysqlrun/mysqld.pid" --log-error="$DIR/mysqlrun/mysqld.log" --skip-networking \
      --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
    wait_for 30 "mariadbd PID file" test -s "$DIR/mysqlrun/mysqld.pid"
    record mariadbd "$DIR/mysqlrun/mysqld.pid"
  fi
  wait_for 30 mariadb mariadb --no-defaults -S "$DBSOCK" -u root -e 'select 1'
  mariadb --no-defaults -S "$DBSOCK" -u root -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  if ! alive slurmdbd "$DIR/run/slurmdbd.pid"; then
    MYSQL_UNIX_PORT=$DBSOCK slurmdbd # libmariadb takes the socket path only from MYSQL_UNIX_PORT
    record slurmdbd "$DIR/run/slurmdbd.pid"
  fi
  wait_for 30 slurmdbd sacctmgr -n list cluster
fi

# ---- 6. slurmctld, slurmd -------------------------------------------------------------------------------------
if ! alive slurmctld "$DIR/run/slurmctld.pid"; then
  slurmctld -i # -i: ignore unreadable state files instead of refusing to start
  record slurmctld "$DIR/run/slurmctld.pid"
fi
wait_for 30 slurmctld scontrol ping
for n in $NODE_NAMES; do
  if ! alive slurmd "$DIR/run/slurmd-$n.pid"; then
    if [ "$NODES" -gt 1 ]; then slurmd -N "$n"; else slurmd; fi
    record slurmd "$DIR/run/slurmd-$n.pid"
  fi
done
states() { sinfo -h -N -o '%t' | sort -u | tr '\n' ' '; }
all_up() { [ -n "$(states)" ] && ! states | grep -qvE '^((idle|mix|alloc|comp) )+$'; }
all_idle() { [ "$(states)" = "idle " ]; }
for _ in $(seq 1 600); do
  all_up && break
  # a node left DOWN/DRAIN by an earlier run: put it back
  sinfo -h -N -o '%N %t' | awk '$2 ~ /down|drain|fail/ {print $1}' | while read -r n; do
    scontrol update nodename="$n" state=resume 2>/dev/null || true
  done
  sleep 0.1
done
all_up || die "nodes not up: $(sinfo -h -N -o '%N=%t' | tr '\n' ' ')"
if [ "$ACCT" = 1 ]; then
  wait_for 30 "cluster registration in slurmdbd" sh -c 'sacctmgr -n -P list cluster format=cluster | grep -qx local'
fi
if all_idle; then timeout 60 srun -N "$NODES" -n "$NODES" true || die "smoke srun across $NODES node(s) failed"; fi
log "up: nodes $(sinfo -h -o '%N') in partition $(sinfo -h -o '%P' | head -n1); accounting=$ACCT; state in $DIR"
