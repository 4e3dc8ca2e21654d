# Two commands on a fresh machine: `make demo` and `make test` (both run the setup first).
VENV ?= .venv
BIN := $(VENV)/bin
# Three workers on two cores: the ROS tests spend most of their time waiting on real processes and
# clocks, and a third worker keeps both cores busy meanwhile.
PYTEST_WORKERS ?= 3

.PHONY: setup demo demo-deploy test docs bench-throughput clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock scripts/setup.sh
	bash scripts/setup.sh

# Train the suite's best learner within the demo's budget (CrossQ, critic width 256; see docs/benchmarks/learn.md)
# on HalfCheetah-v5 for 40k env steps, evaluate it, and write a run folder (config, checkpoint, TensorBoard events, eval.json, learning curve, policy video).
demo: setup
	$(BIN)/robo-rl train agent=crossq train=demo

# Train a policy on the 7-DoF arm task, then deploy it over ROS to the MuJoCo sim arm node (a real
# roscore on loopback): a dry run, then for real, behind the safety layer.
demo-deploy: setup
	bash scripts/deploy_demo.sh

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q --durations=15

bench-throughput: setup
	$(BIN)/robo-rl bench throughput

clean:
	rm -rf runs outputs multirun .pytest_cache site

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, a missing anchor or a
# page left out of the navigation fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
