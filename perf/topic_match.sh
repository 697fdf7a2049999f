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
echo "load before: $(uptime)"
build/release/bench/topic_match_bench \
  --benchmark_repetitions=3 --benchmark_min_time=0.2 --benchmark_display_aggregates_only=true \
  --benchmark_out="$out" --benchmark_out_format=json "$@"
echo "load after: $(uptime)"
if [ "$publish" = 1 ]; then
  mkdir -p perf/results/published docs/img
  cp "$out" perf/results/published/topic_match_bench.json
  /usr/bin/python3 perf/bench_plot.py perf/results/published/topic_match_bench.json \
    --png docs/img/topic_match.png --markdown docs/performance.md
fi
/usr/bin/python3 perf/bench_plot.py "$out"
