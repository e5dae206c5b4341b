# Benchmarks: every figure beside a reference measured in the same run, JSON + table + plot
# under benchmarks/results/. The full suite needs a quiet machine (check `uptime`) and about 30 minutes.
BENCH_ARGS ?=

bench: venv ## all ten benchmarks against the embedded broker (~30 min): benchmarks/results/<date>-<rev>.json
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: venv ## the benchmarks in their small mode (~6 min), same JSON shape
	$(PY) -m benchmarks --quick $(BENCH_ARGS)
