#!/usr/bin/env bash
# Drive bench/benchmark.py on the lent GPU machine (see bench/README.md).
#
#   bash bench/run_gpu.sh smoke start wait     # first call: checks, then the full chain
#   bash bench/run_gpu.sh wait                 # later calls: wait for the chain, collect
#
# smoke  versions + a small full-size run (256x256, few steps); stops here on failure
# start  runs the modes in $MODES (default: multi pictures, with the bot's defaults) one after another in a
#        background session, so the chain can outlast one call's 10-minute limit. An entry may carry settings
#        after "@": "multi@COMPILE=off@MAX_BATCH=16" runs that mode with them, its JSON named after them.
#        The modes share Inductor's compile cache (/tmp/torchinductor_$USER): only the first compiles cold
# wait   waits until the chain is done or $LIMIT seconds (default 560) have passed since
#        this script started, then copies JSON results and logs to $OUT
set -u
W=${W:-/tmp/k22bench}
OUT=${OUT:-$W/out}
LIMIT=${LIMIT:-560}
MODES=${MODES:-multi pictures}
WHEELS=${WHEELS:-.whl}  # diffusers (and any other missing package) as wheels
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
fi

collect() {
  cp "$W"/results_*.json "$OUT"/ 2>/dev/null
  for f in "$W"/*.log; do echo "===== $(basename "$f")"; cat "$f"; done > "$OUT/logs.txt" 2>/dev/null
}

for cmd in "$@"; do
  case "$cmd" in
  smoke)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import sys, torch, diffusers, transformers, huggingface_hub, accelerate; print(sys.version.split()[0], torch.__version__, diffusers.__version__, transformers.__version__, huggingface_hub.__version__, accelerate.__version__)"
    set -o pipefail
    python3 bench/benchmark.py --mode eager --smoke --out "$W" ${BENCH_ARGS:-} 2>&1 | tee "$W/smoke.log" || { collect; exit 1; }
    set +o pipefail
    ;;
  start)
    rm -f "$W/ALL_DONE"
    setsid nohup bash -c "for m in $MODES; do tag=\$(echo \$m | tr '@=' '_-'); env \$(echo \$m | cut -s -d@ -f2- | tr '@' ' ') BENCH_TAG=\$tag TORCH_LOGS=recompiles python3 bench/benchmark.py --mode \${m%%@*} --out $W ${BENCH_ARGS:-} > $W/\$tag.log 2>&1; echo \"\$m exit \$?\" >> $W/chain.log; done; touch $W/ALL_DONE" > /dev/null 2>&1 < /dev/null &
    echo "chain started: $MODES"
    ;;
  wait)
    while [ ! -e "$W/ALL_DONE" ] && [ "$SECONDS" -lt "$LIMIT" ]; do sleep 5; done
    collect
    cat "$W/chain.log" 2>/dev/null
    for m in $MODES; do t=$(echo $m | tr '@=' '_-'); [ -e "$W/$t.log" ] && { echo "===== $m (tail)"; grep -v "^V\|recompil" "$W/$t.log" | tail -25; }; done
    [ -e "$W/ALL_DONE" ] && echo ALL_DONE || echo "STILL RUNNING after ${SECONDS}s"
    ;;
  esac
done
