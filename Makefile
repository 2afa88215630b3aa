# curator: two commands on a fresh machine.
#   make demo   set everything up and run the main job on embedded defaults
#   make test   set everything up and run the test suite
# Everything the project needs is installed from here: uv (via pip), the Debian packages the
# tests use (when apt-get is available), and the locked Python environment (uv.lock).

PYTHON ?= python3
UV := $(PYTHON) -m uv
APT_PACKAGES := dataset-fashion-mnist redis-server chromium
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help setup uv apt sync demo test test-all bench bench-al lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

apt: ## install the Debian packages the tests and demo use (needs root and apt-get)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "apt-get not found; install:$$missing"; exit 0; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	echo "installing Debian packages:$$missing"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null

sync: uv
	@$(UV) sync --frozen --all-extras --quiet

setup: apt sync ## install everything (uv, Debian packages, the locked environment)

demo: setup ## run the main job on embedded defaults
	$(UV) run --frozen curator demo $(DEMO_ARGS)

test: setup ## run the test suite (slow tests excluded)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-all: setup ## run the test suite including slow tests
	$(UV) run --frozen pytest --run-slow $(PYTEST_ARGS)

bench: setup ## run the benchmarks (about 30 min) and write benchmarks/results/
	$(UV) run --frozen python benchmarks/bench_selection.py --n 100000 --k 1000 --dim 128 --seed 0 \
		--out benchmarks/results/bench_selection.json
	$(UV) run --frozen python benchmarks/bench_index.py --sizes 100000 1000000 --dim 128 \
		--queries 10000 --sweep-ef 32 48 96 128 --repeats 3 --seed 0 \
		--out benchmarks/results/bench_index.json --plot benchmarks/results/bench_index.png
	$(UV) run --frozen python benchmarks/dedup_bikes.py --out benchmarks/results/dedup_bikes.json
	$(UV) run --frozen python benchmarks/bench_ingest.py --out benchmarks/results/bench_ingest.json
	$(UV) run --frozen python benchmarks/ingest_phases.py --out benchmarks/results/ingest_phases.json
	$(UV) run --frozen python benchmarks/bench_edge.py --out benchmarks/results/bench_edge.json

bench-al: setup ## the active-learning benchmark (48 min on 2 idle cores; run it alone)
	$(UV) run --frozen python benchmarks/bench_active_learning.py --seeds 0 1 2 \
		--strategies random uncertainty_diversity entropy margin kcenter typicality \
		--out benchmarks/results/bench_active_learning.json \
		--plot benchmarks/results/bench_active_learning.png

lint: setup ## ruff and mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

format: sync ## format the code with ruff
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

clean: ## remove caches and build output
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
