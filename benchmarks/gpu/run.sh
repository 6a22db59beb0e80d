#!/usr/bin/env bash
# The GPU check in one command, for a lent GPU machine (one H100; ends within 8 minutes there):
#
#   bash benchmarks/gpu/run.sh [--smoke] [--simulate-machine] [OUTDIR]
#
# carried with it: .whl (the wheels `make gpu-wheels` downloads) and .gpu-data (the CIFAR-10
# subset). Installs the wheels into a temporary folder put first on PYTHONPATH (skipped when .whl/
# holds none), then runs benchmarks/gpu/gpu_check.py, which writes gpu.md and gpu.json to OUTDIR,
# else to $OUT, else to benchmarks/results. --smoke: tiny sizes on the CPU (what `make test` runs).
# PYTHON picks the interpreter (default python3); GPU_CHECK_WHEELS the wheel folder (default .whl);
# GPU_CHECK_LIMIT_S the hard limit of the Python run (default 455 s;
# gpu_check.py boxes its sections within 420 s, imports not counted).
set -u
cd "$(dirname "$0")/../.." || exit 1

args=()
outdir=""
for a in "$@"; do
  case "$a" in
    --*) args+=("$a") ;;
    *) outdir="$a" ;;
  esac
done
outdir="${outdir:-${OUT:-benchmarks/results}}"
mkdir -p "$outdir" || exit 1
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 WANDB_MODE="${WANDB_MODE:-disabled}" LOOKAHEAD_FASTAI_OFFLINE=1

shopt -s nullglob
wheel_dir="${GPU_CHECK_WHEELS:-.whl}"
wheels=("$wheel_dir"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  site="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")"
  start=$SECONDS
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${wheels[@]}" || { echo "run.sh: installing the wheels of $wheel_dir/ failed" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "run.sh: ${#wheels[@]} wheels from $wheel_dir/ installed into $site in $((SECONDS - start)) s"
else
  echo "run.sh: no wheels in $wheel_dir/; using the packages $py already has"
fi

# a last guard: gpu_check.py keeps its own time boxes and writes its files after every section
timeout -k 10 "${GPU_CHECK_LIMIT_S:-455}" "$py" benchmarks/gpu/gpu_check.py ${args[@]+"${args[@]}"} --out "$outdir"
