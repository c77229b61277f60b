#!/usr/bin/env bash
# Start a real local PostgreSQL server from Debian's `postgresql` package, as root, without systemd, for the
# Optuna storage of searches with many workers (hydra.sweeper.storage=postgresql+psycopg://...).
#
# Idempotent: installs what is missing, creates its own cluster (initdb) under $RNA_HPC_PG_DIR, renders its
# settings, starts the server as the postgres user only when it is not running (restarts it when the rendered
# settings changed), creates the role and the database, and prints the database URL (also written to
# $RNA_HPC_PG_DIR/url). The server it starts is recorded in $RNA_HPC_PG_DIR/run/started for stop.sh.
#
#   RNA_HPC_PG_DIR              data, socket, log, PID   (default ${TMPDIR:-/tmp}/rna-hpc-postgres)
#   RNA_HPC_PG_PORT             TCP port on 127.0.0.1 (the unix socket in $RNA_HPC_PG_DIR/run uses the same number)
#                               (default 15432)
#   RNA_HPC_PG_DB               database and role name   (default rna_hpc; the role may create test databases)
#   RNA_HPC_PG_MAX_CONNECTIONS  max_connections: one per trial job in flight, plus the sweeper   (default 200)
set -euo pipefail

DIR=${RNA_HPC_PG_DIR:-${TMPDIR:-/tmp}/rna-hpc-postgres}
PORT=${RNA_HPC_PG_PORT:-15432}
DB=${RNA_HPC_PG_DB:-rna_hpc}
MAX_CONN=${RNA_HPC_PG_MAX_CONNECTIONS:-200}
PASS=$DB # the server listens on 127.0.0.1 and a private socket only: the password guards nothing
DATA=$DIR/data
RUN=$DIR/run

log() { echo "[rna-hpc-postgres] $*" >&2; }
die() {
  log "ERROR: $*"
  [ -f "$DIR/log/postgres.log" ] && { echo "== $DIR/log/postgres.log" >&2; tail -n 15 "$DIR/log/postgres.log" >&2; }
  exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
if ! [[ "$PORT" =~ ^[1-9][0-9]*$ ]] || [ "$PORT" -gt 65535 ]; then
  die "RNA_HPC_PG_PORT must be a TCP port, got '$PORT'"
fi
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "RNA_HPC_PG_DB must be a lower-case SQL name, got '$DB'"
[[ "$MAX_CONN" =~ ^[1-9][0-9]*$ ]] || die "RNA_HPC_PG_MAX_CONNECTIONS must be a positive integer, got '$MAX_CONN'"

# ---- 1. packages ----------------------------------------------------------------------------------------------
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed'; then
  log "installing postgresql"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  # policy-rc.d 101: the package must not start Debian's own cluster on 5432 (this script runs its own)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    postgresql >/dev/null
fi
BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -x "$BIN/pg_ctl" ] || die "no pg_ctl under /usr/lib/postgresql/*/bin"
as_pg() { runuser -u postgres -- "$@"; }

# ---- 2. cluster -----------------------------------------------------------------------------------------------
mkdir -p "$DIR/log" "$RUN"
chmod 755 "$DIR"
chown postgres:postgres "$DIR/log" "$RUN"
if [ ! -s "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA"
  chown postgres:postgres "$DATA"
  chmod 700 "$DATA"
  # local (socket): the postgres superuser by peer; TCP on loopback: passwords (scram)
  as_pg "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=peer \
    --auth-host=scram-sha-256 >"$DIR/log/initdb.log" 2>&1 || die "initdb failed (see $DIR/log/initdb.log)"
  echo "include_if_exists = 'rna_hpc.conf'" >>"$DATA/postgresql.conf"
fi
new_conf="# Rendered by db/start.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = $MAX_CONN
shared_buffers = 64MB
fsync = on"
changed=0
[ "$(cat "$DATA/rna_hpc.conf" 2>/dev/null)" = "$new_conf" ] || changed=1
if [ "$changed" = 1 ]; then
  printf '%s\n' "$new_conf" >"$DATA/rna_hpc.conf.tmp"
  chown postgres:postgres "$DATA/rna_hpc.conf.tmp"
  mv -f "$DATA/rna_hpc.conf.tmp" "$DATA/rna_hpc.conf"
fi

# ---- 3. server ------------------------------------------------------------------------------------------------
pid_of() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null; }
alive() { local pid; pid=$(pid_of) && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; }
record() { grep -qxF "postgres $DATA" "$RUN/started" 2>/dev/null || echo "postgres $DATA" >>"$RUN/started"; }
if alive && [ "$changed" = 1 ]; then
  log "settings changed: restarting the server"
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
fi
if ! alive; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT on 127.0.0.1 is taken by another program: set RNA_HPC_PG_PORT"
  fi
  # setsid: the server outlives this shell and the terminal that started it
  as_pg setsid "$BIN/pg_ctl" -D "$DATA" -l "$DIR/log/postgres.log" -w -t 60 start >/dev/null ||
    die "pg_ctl start failed"
  record
fi
for _ in $(seq 1 300); do
  as_pg "$BIN/pg_isready" -q -h "$RUN" -p "$PORT" && break
  sleep 0.1
done
as_pg "$BIN/pg_isready" -q -h "$RUN" -p "$PORT" || die "server not ready after 30 s"

# ---- 4. role and database -------------------------------------------------------------------------------------
psql_pg() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -d postgres "$@"; }
psql_pg -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB') THEN CREATE ROLE $DB LOGIN CREATEDB; END IF;
  ALTER ROLE $DB PASSWORD '$PASS';
END \$\$;" >/dev/null || die "cannot create role $DB"
if [ -z "$(psql_pg -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  psql_pg -c "CREATE DATABASE $DB OWNER $DB" >/dev/null || die "cannot create database $DB"
fi
URL="postgresql+psycopg://$DB:$PASS@127.0.0.1:$PORT/$DB"
printf '%s\n' "$URL" >"$DIR/url"
log "up: PostgreSQL $("$BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PORT and $RUN; data in $DATA"
echo "$URL"
