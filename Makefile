# Everything a fresh machine needs: `make run` serves on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DATA_DIR ?= .bootvault
# Volumes are served by qemu-storage-daemon (qemu-system-common) and read over NBD with libnbd's
# Python binding (python3-libnbd); qemu-img (qemu-utils) converts; nbdkit with its python plugin
# serves backups to instantly restored volumes; wrk drives the API bench; chromium (driven by
# Playwright, whose own browser download cannot work here) runs the console's browser tests.
DEBS := qemu-utils qemu-system-common python3-libnbd libnbd-bin nbdkit nbdkit-plugin-python wrk chromium
NBD_SO := /usr/lib/python3/dist-packages/libnbdmod.cpython-311-x86_64-linux-gnu.so

.PHONY: install system-packages run test test-fast lint bench chaos clean

system-packages:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# libnbd's Python binding is a Debian package built for the system python 3.11; the venv (same
# ABI) gets links to just its two files rather than all of dist-packages.
$(STAMP): pyproject.toml | system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
		ln -sf /usr/lib/python3/dist-packages/nbd.py $(NBD_SO) "$$site"/
	$(BIN)/python -c 'import nbd, qemu.qmp'
	$(BIN)/bootvault doctor
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) system-packages

# TLS=1: HTTPS with a local CA made on first start in $(DATA_DIR)/tls (see docs/tls.md).
run: $(STAMP)
	$(BIN)/bootvault serve --data-dir $(DATA_DIR) --demo $(if $(filter 1 yes true,$(TLS)),--tls-demo)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# The e2e tests mostly wait on servers, daemons and clients: TEST_JOBS pytest workers (whole files
# each, in order, so module fixtures stay whole) overlap those waits on CI's 2 cores.
TEST_JOBS ?= 3
test: $(STAMP) lint
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile

# The unit, contract and in-process tiers (tests/service: the service and the ASGI app with jobs
# run inline), without the e2e tests: the quick answer while changing a rule.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not e2e" -n 2 -q

# BENCH_ARGS, e.g. "--size-mib 256" for a quick run of the peer comparison; see bench/run.py --help.
# LIVE_ARGS, e.g. "--quick", for the live-volume run (bench/live.py --help); it reads bench/run.py's
# last run for the standard incremental, so it comes last. BENCH_SRC_REV=<git rev> benches a commit.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/s3.py
	$(BIN)/python bench/policies.py
	$(BIN)/python bench/live.py $(LIVE_ARGS)
	$(BIN)/python bench/api.py
	$(BIN)/python bench/instant.py
	$(BIN)/python bench/attach.py
	$(BIN)/python bench/console.py

# Chaos soak (bench/chaos.py): random SIGKILLs under a mixed workload, then every invariant.
SEED ?= 1
MINUTES ?= 2
BACKEND ?= sqlite
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --seed $(SEED) --minutes $(MINUTES) --backend $(BACKEND)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
