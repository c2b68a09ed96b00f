# callfleet: every target installs what it needs, so a fresh machine needs only `make`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := kamailio kamailio-extra-modules sip-tester openssh-server iproute2 procps prometheus systemd-container debootstrap postgresql chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps venv install pulumi demo lab-up lab-down test test-e2e test-unit coverage-core lint bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## Debian packages (kamailio, sipp, sshd, prometheus, postgresql chromium for the store tests); skipped when already present
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages present"; fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## the .venv with callfleet in editable mode and its dev extras

install: deps venv ## everything: Debian packages and the venv

pulumi: ## the Pulumi engine: the one on PATH, else built with Go into .tools/bin (pinned in tools/pulumi/go.mod)
	@tools/pulumi/build.sh

demo: install ## the main job: lab up, a good release canary-first over 6 sites, a faulty one stopped at the canary
	$(VENV)/bin/callfleet lab demo

lab-down: venv ## stop every lab process
	$(VENV)/bin/callfleet lab down

# One process by default: on two cores, two labs at once slow every timed test (leases, bakes,
# watch rounds) until some fail. With more cores: TEST_PARALLEL="-n 2 --dist loadscope
# --no-loadscope-reorder" gives each pytest-xdist worker a lab of its own (tests/lab/conftest.py)
# and a whole file at a time, the longest first (tests/conftest.py's scheduler).
TEST_PARALLEL ?=

test: install ## lint, types, unit, lab integration tests, whole rollouts and incident replays (what CI runs)
	@tools/pulumi/build.sh --background  # the engine builds (niced) while the lab tests run; its tests wait
	$(MAKE) lint
	$(MAKE) coverage-core
	$(VENV)/bin/pytest $(TEST_PARALLEL)

test-e2e: install ## only the whole six-site rollouts (kill -9/resume, lock, advance) and the incident replays
	$(VENV)/bin/pytest -m e2e_rollout

coverage-core: venv ## the pure decision cores are covered line for line and branch for branch by their table tests
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/rollout/test_decide.py tests/unit/guard \
	  --cov=orchestrator.rollout.decide --cov=orchestrator.guard.judge \
	  --cov-branch --cov-report=term-missing --cov-fail-under=100

test-unit: venv pulumi ## unit tests only (no lab)
	$(VENV)/bin/pytest -m 'not lab'

YAML_DIRS := playbooks inventory policies examples

lint: venv ## ruff, mypy, yamllint and ansible-lint (production profile)
	$(VENV)/bin/ruff check orchestrator tests
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -s -c .yamllint $(YAML_DIRS)
	cd playbooks && PATH="$(abspath $(VENV))/bin:$$PATH" ansible-lint -q --strict .

bench: install ## benchmarks on the lab; figures to benchmarks/results/ (JSON and Markdown) and the README
	$(VENV)/bin/python benchmarks/gate_faults.py
	$(VENV)/bin/python benchmarks/blast_radius.py
	$(VENV)/bin/python benchmarks/overhead.py
	$(VENV)/bin/python benchmarks/scale.py
	$(VENV)/bin/python benchmarks/lab_size.py
	$(VENV)/bin/python benchmarks/alert_latency.py
	$(VENV)/bin/python benchmarks/guard_good_rollouts.py
	$(VENV)/bin/python benchmarks/readme_results.py

clean: ## remove the venv, the built tools and caches (Go's own caches stay)
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
