#!/usr/bin/env bash
# The prepared check for a machine with a CUDA GPU (under 8 minutes on one GPU); prints figures.
#   bash benchmarks/gpu_check.sh            # from the repository root or anywhere
# 1. a venv (.venv-gpu) with a CUDA build of torch 2.13.0: the machine's own if it has one, else pip installs it
# 2. the tests marked gpu
# 3. model=base trained for a fixed number of steps in bf16-mixed and in fp32: samples/s and peak GPU memory
# 4. one checkpoint (python -m rna_hpc.train trainer=gpu), the validation split predicted on GPU and on CPU with the
#    same seed: the TM-score between the two predictions of each target (expect >= 0.99)
# Settings: GPU_CHECK_STEPS (40), GPU_CHECK_OUT (outputs/gpu_check, or $OUT/gpu_check), GPU_CHECK_VENV (.venv-gpu),
# RNA_HPC_DATA (the real set when present there; the embedded synthetic set otherwise), GPU_CHECK_TARGETS (12),
# GPU_CHECK_WHEELS (a folder of wheels: pip installs from it alone, for machines without a package index),
# GPU_CHECK_TORCH (2.13.0: the torch version required; "any" accepts the machine's CUDA build, and says which).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${GPU_CHECK_STEPS:-40}
TARGETS=${GPU_CHECK_TARGETS:-12}
VENV=${GPU_CHECK_VENV:-.venv-gpu}
RESULTS=${GPU_CHECK_OUT:-${OUT:+$OUT/gpu_check}}
RESULTS=${RESULTS:-outputs/gpu_check}
DATA_DIR=${RNA_HPC_DATA:-../shared/data/rna3d}
PY=$VENV/bin/python
T0=$SECONDS

say() { printf '== [%4ss] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { echo "gpu_check: $*" >&2; exit 1; }

TORCH=${GPU_CHECK_TORCH:-2.13.0}
PIP=(-m pip install -q)  # with bytecode: where PYTHONDONTWRITEBYTECODE is set, each process would recompile
if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
  PIP+=(--no-index --find-links "$GPU_CHECK_WHEELS")
fi

cuda_torch() {  # exit 0 when $1 imports a CUDA build of torch $TORCH (or any with TORCH=any) that sees a GPU
  TORCH=$TORCH "$1" -c 'import os, sys, torch; want = os.environ["TORCH"]
sys.exit(0 if (want == "any" or torch.__version__.startswith(want)) and torch.version.cuda
         and torch.cuda.is_available() else 1)' 2>/dev/null
}

say "machine"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this machine has no NVIDIA driver"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "nvidia-smi sees no GPU"
mkdir -p "$RESULTS"

say "environment ($VENV)"
if [ ! -x "$PY" ]; then
  python3 -m venv --system-site-packages "$VENV"  # reuses a CUDA torch the machine already has
  # python3 may itself be a venv, whose packages --system-site-packages does not reach: link them in
  python3 -c 'import site, sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' &&
    python3 -c 'import site; print("\n".join(site.getsitepackages()))' \
      >"$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/machine-site.pth"
fi
if ! cuda_torch "$PY"; then
  [ "$TORCH" != any ] || fail "no CUDA build of torch that sees a GPU on this machine"
  say "installing torch $TORCH (CUDA build)"
  "$PY" "${PIP[@]}" "torch==$TORCH" || fail "cannot install torch $TORCH (no package index? set GPU_CHECK_WHEELS)"
fi
cuda_torch "$PY" || fail "$("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)')
  is not a CUDA build of torch $TORCH that sees a GPU"
# the locked set without its torch line: the CUDA build above stays
grep -v '^torch==' requirements.lock >"$RESULTS/requirements.txt"
"$PY" "${PIP[@]}" -r "$RESULTS/requirements.txt" || fail "cannot install requirements.lock (set GPU_CHECK_WHEELS)"
"$PY" "${PIP[@]}" --no-deps -e . || fail "cannot install the project"
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'

if [ -f "$DATA_DIR/val_sequences.csv" ]; then
  DATA=(data=rna3d "data.dir=$(cd "$DATA_DIR" && pwd)" data.max_length=128 data.batch_size=8)
  INPUT=$RESULTS/val_sequences.csv
  head -n "$((TARGETS + 1))" "$DATA_DIR/val_sequences.csv" >"$INPUT"
else
  say "no real data at $DATA_DIR: the embedded synthetic set"
  DATA=(data=synthetic data.batch_size=8)
  "$PY" -m rna_hpc.prepare "+export_dir=$RESULTS/data" "hydra.run.dir=$RESULTS/prepare" >/dev/null
  INPUT=$RESULTS/data/val_sequences.csv
fi
DATA+=("data.cache_dir=$RESULTS/cache")

say "tests marked gpu"
"$PY" -m pytest tests -m gpu -q -p no:cacheprovider

say "training throughput: model=base, $STEPS steps"
for precision in bf16-mixed 32-true; do
  "$PY" benchmarks/gpu_throughput.py --model base --precision "$precision" --steps "$STEPS" \
    --record "$RESULTS/throughput.jsonl" "${DATA[@]}" 2>>"$RESULTS/throughput.log" | grep '^train '
done

say "one checkpoint: python -m rna_hpc.train trainer=gpu model=base ($STEPS steps, bf16-mixed)"
"$PY" -m rna_hpc.train trainer=gpu model=base "${DATA[@]}" "trainer.max_steps=$STEPS" trainer.max_epochs=1000 \
  trainer.enable_progress_bar=false "hydra.run.dir=$RESULTS/train" "paths.shared_dir=$RESULTS/shared" \
  >"$RESULTS/train.log" 2>&1 || { tail -n 30 "$RESULTS/train.log"; fail "training on the GPU failed"; }
grep -E "val/tm = " "$RESULTS/train.log" | tail -n 1

say "prediction of the validation split on GPU and on CPU (same checkpoint, seed 0)"
"$PY" benchmarks/gpu_agreement.py --ckpt "$RESULTS/train/ckpt/best.ckpt" --input "$INPUT" \
  --out "$RESULTS/agreement" --min-tm 0.99 seed=0 2>"$RESULTS/agreement.log" | grep -v '^predictions:\|^submission:'

say "done in $((SECONDS - T0)) s; figures and logs in $RESULTS"
