#!/usr/bin/env bash
# Instructions per no-op task, counted by callgrind: the run-to-run noise of
# wall-clock figures on a shared VM is ±30%, this repeats to within 0.1%.
#   bench/instructions.sh [memory|batched|durable]   (needs valgrind)
# It runs bench/cost_per_task.py with 1,000 and 4,000 tasks and divides the
# difference of the two totals by 3,000, so start-up and imports cancel out.
set -euo pipefail
mode="${1:-memory}"
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python}"
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$python" "$here/cost_per_task.py" "$mode" "$1" 8 2>&1 |
        awk '/Collected/ {print $4}'
}
small=$(count 1000)
large=$(count 4000)
echo "$mode: $(( (large - small) / 3000 )) instructions per task"
