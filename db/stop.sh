#!/usr/bin/env bash
# Stop exactly the PostgreSQL server that start.sh started (recorded in $RNA_HPC_PG_DIR/run/started), with
# pg_ctl's fast shutdown, checking that the PID in its postmaster.pid is a running postgres. Leaves the data,
# the logs and the package in place, so a later start.sh finds the same studies.
set -uo pipefail
DIR=${RNA_HPC_PG_DIR:-${TMPDIR:-/tmp}/rna-hpc-postgres}
LIST=$DIR/run/started
[ -s "$LIST" ] || {
  echo "[rna-hpc-postgres] nothing recorded in $LIST" >&2
  exit 0
}
BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
while read -r comm data; do
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || continue
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || continue
  if runuser -u postgres -- "$BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null; then
    echo "[rna-hpc-postgres] stopped postgres ($pid)" >&2
  elif [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
    echo "[rna-hpc-postgres] postgres ($pid) did not stop in 30 s, sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null
  fi
done <"$LIST"
rm -f "$LIST"
