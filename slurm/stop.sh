#!/usr/bin/env bash
# Stop exactly the daemons that start.sh started (recorded in $SLURM_LOCAL_DIR/run/started), newest first,
# by PID file, checking the command name so that a reused PID is never signalled. Leaves state, logs, config
# and packages in place, so a later start.sh keeps job IDs and accounting.
set -uo pipefail
DIR=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/rna-hpc-slurm}
LIST=$DIR/run/started
[ -s "$LIST" ] || {
  echo "[rna-hpc-slurm] nothing recorded in $LIST" >&2
  exit 0
}
gone() { [ ! -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
tac "$LIST" | while read -r comm pidfile; do
  pid=$(cat "$pidfile" 2>/dev/null) || continue
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || continue
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 200); do # up to 20 s
    gone "$pid" && break
    sleep 0.1
  done
  if ! gone "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
    echo "[rna-hpc-slurm] $comm ($pid) ignored SIGTERM, sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null
  fi
  echo "[rna-hpc-slurm] stopped $comm ($pid)" >&2
done
rm -f "$LIST"
