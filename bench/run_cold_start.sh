#!/usr/bin/env bash
# Drive bench/cold_start.py on the lent GPU machine, past one call's 10-minute limit.
#
#   bash bench/run_cold_start.sh start wait    # first call: installs, starts the chain, waits
#   bash bench/run_cold_start.sh wait          # later calls: wait for the chain, collect
#
# The chain: on every GPU (DEVICE=all) a start with an empty compile cache, then one with the
# cache it filled and $USERS users; then a warm start on the first GPU alone with $USERS1 users.
set -u
W=${W:-/tmp/coldstart}
OUT=${OUT:-$W/out}
LIMIT=${LIMIT:-560}
USERS=${USERS:-32}
USERS1=${USERS1:-16}
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import diffusers, pydantic_settings, dotenv" 2>/dev/null; then  # .whl: what the machine lacks
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
for cmd in "$@"; do
  case "$cmd" in
  start)
    rm -rf "$W/ALL_DONE" "$W/work" "$W/chain.log"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpus.txt"
    setsid nohup bash -c "
      python3 bench/cold_start.py --device all --work $W/work --out $OUT/all_gpus.json \
        --cold-budget-s 720 --warm-budget-s 150 --users $USERS --rounds 2 > $W/all_gpus.log 2>&1
      echo \"all gpus exit \$?\" >> $W/chain.log
      cp $W/work/cold.log $OUT/all_gpus_cold.log; cp $W/work/warm.log $OUT/all_gpus_warm.log
      python3 bench/cold_start.py --device cuda:0 --starts warm --work $W/work --out $OUT/one_gpu_warm.json \
        --warm-budget-s 150 --users $USERS1 --rounds 2 > $W/one_gpu.log 2>&1
      echo \"one gpu exit \$?\" >> $W/chain.log
      cp $W/work/warm.log $OUT/one_gpu_warm.log
      touch $W/ALL_DONE" > /dev/null 2>&1 < /dev/null &
    echo "chain started"
    ;;
  wait)
    while [ ! -e "$W/ALL_DONE" ] && [ "$SECONDS" -lt "$LIMIT" ]; do sleep 5; done
    cp "$W"/*.log "$OUT"/ 2>/dev/null
    cat "$W/chain.log" 2>/dev/null
    for f in "$W"/all_gpus.log "$W"/one_gpu.log; do [ -e "$f" ] && { echo "===== $f"; tail -c 3000 "$f"; }; done
    [ -e "$W/ALL_DONE" ] && echo ALL_DONE || echo "STILL RUNNING after ${SECONDS}s"
    ;;
  esac
done
