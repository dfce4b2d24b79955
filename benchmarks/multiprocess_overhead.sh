#!/usr/bin/env bash
# Median train-step time of 1 process vs 2 JAX processes (localhost coordinator,
# gloo CPU collectives) for the same global batch, using the test worker
# (tiny fixture model, 300 steps). Prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
unset XLA_FLAGS
out=$(mktemp -d)
python -m tests.train.worker --workdir="$out/one" --steps=300 --checkpoint_every=1000 > /dev/null
port=$(python -c 'import socket; s=socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')
for k in 0 1; do
  python -m tests.train.worker --workdir="$out/two" --steps=300 --checkpoint_every=1000 \
      --num_processes=2 --process_id=$k --port="$port" > /dev/null &
done
wait
python - "$out" <<'PY'
import json, statistics, sys
median = {}
for name in ('one', 'two'):
  times = [json.loads(l)['step_time'] for l in open(f'{sys.argv[1]}/{name}/metrics.jsonl')][20:]
  median[name] = statistics.median(times)
print(json.dumps({'measurement': 'multiprocess_overhead', 'one_process_step_ms': 1e3 * median['one'],
                  'two_processes_step_ms': 1e3 * median['two'],
                  'overhead_ms': 1e3 * (median['two'] - median['one'])}))
PY
rm -rf "$out"
