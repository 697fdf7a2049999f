#!/bin/sh
# Runs tern's topic-matching benchmarks (bench/README.md) and prints the results and targets.
#
#   perf/topic_match.sh [--publish] [extra Google Benchmark flags]
#
# Builds the release preset, runs topic_match_bench with 3 repetitions (medians are reported),
# writes perf/results/topic_match_bench.json and prints the tables. With --publish it also copies
# the JSON to perf/results/published/, draws docs/img/topic_match.png and rewrites the tables in
# docs/performance.md. Run it on a quiet machine: check `uptime` first.
set -eu
cd "$(dirname "$0")/.."
publish=0
if [ "${1:-}" = "--publish" ]; then
  publish=1
  shift
fi
cmake --preset release >/dev/null
cmake --build --preset release --target topic_match_bench
mkdir -p perf/results
out=perf/results/topic_match_bench.json
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src include bench || commit="$commit+changes"
echo "load before: $(uptime)"
build/release/bench/topic_match_bench \
  --benchmark_repetitions=3 --benchmark_min_time=0.2 --benchmark_display_aggregates_only=true \
  --benchmark_context="commit=$commit" \
  --benchmark_out="$out" --benchmark_out_format=json "$@"
echo "load after: $(uptime)"
# Google Benchmark records the load average at the start; the end matters as much.
/usr/bin/python3 - "$out" <<'PY'
import json, os, sys
with open(sys.argv[1]) as f:
    data = json.load(f)
data["context"]["load_avg_after"] = list(os.getloadavg())
with open(sys.argv[1], "w") as f:
    json.dump(data, f, indent=2)
PY
if [ "$publish" = 1 ]; then
  mkdir -p perf/results/published docs/img
  cp "$out" perf/results/published/topic_match_bench.json
  /usr/bin/python3 perf/bench_plot.py perf/results/published/topic_match_bench.json \
    --png docs/img/topic_match.png --markdown docs/performance.md
fi
/usr/bin/python3 perf/bench_plot.py "$out"
