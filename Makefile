# Everything bootstraps from a bare python3: a private uv in .tools/, the locked env in .venv/.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

.PHONY: run test lint bench bench-peers clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# C sources too: uv rebuilds the project's extension when they change (pyproject's cache-keys).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock $(wildcard src/pythonhosted/*/*.c)
	$(UV) sync --locked --quiet
	touch $@

# For the tests, installed packages are compiled to bytecode once, in parallel (10 s on 2
# cores), not by the first import of each: the test workers start together and would each
# compile the same. `make run` leaves it to the imports: they compile what the services use,
# a fraction of the environment (its test tools are most of it), so a fresh clone's first
# `make run` is 22 s of CPU shorter.
$(VENV)/.compiled: $(VENV)/.synced
	$(UV) sync --locked --quiet --compile-bytecode
	touch $@

# BigQuery's emulator for the tests (tests/warehouse/test_bigquery_emulator.py), in an
# environment of its own: it pins DuckDB 1.5, the project uses 2.x. From PyPI only; its
# spatial extension comes in a wheel, so it starts without the internet (docs/warehouses.md).
BQEMULATOR := .tools/bqemulator
$(BQEMULATOR)/.installed: $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(BQEMULATOR)
	$(UV) pip install --quiet --python $(BQEMULATOR)/bin/python bqemulator==1.4.0 \
		duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy==2.4.6
	touch $@

run: $(VENV)/.synced
	$(VENV)/bin/pythonhosted serve

# In parallel (pytest-xdist; ports and directories are per test), three workers per two cores:
# a fifth of the tests' time is spent waiting on subprocesses starting and on the network, which
# a third worker fills (2 cores: 3 min 48 s against 4 min 29 s with one worker per core).
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE, common in
# containers and CI images): otherwise each worker, each of the ~160 `python -m pythonhosted`
# processes the tests start and each server worker those start compiles every module it imports
# from source, and pytest rewrites every test module's asserts in each worker (14 % of the
# suite's CPU time on 2 cores: 434 s against 505 s).
# Tests are handed out one by one, except those marked `xdist_group`, which go to one worker
# together: modules whose costly module fixtures would otherwise be made on every worker.
# Tests marked `long` are collected, hence handed out, first (tests/conftest.py).
# The tests' temporary files (pytest's tmp_path, the session's SeaweedFS, whatever the code and
# the processes it starts put in TMPDIR) go to memory, /dev/shm, where it is a writable tmpfs
# with room (8 GiB free, and 8 GiB of memory available: a passed test's directory is removed
# as it ends; a whole run's peak was 2.3 GB). On this machine's disk (ext4 on a virtual disk)
# a file's creation or removal costs ~100 us of system CPU, ~4x tmpfs's: 80,000 files made for
# one listing test took 9.0 s of CPU against 2.4 s, and the storage and names-index tests
# 60.6 s against 20.1 s (wall 333 s against 132 s, load 17-22). `make test TEST_TMPDIR=` keeps
# the default (/tmp).
TEST_TMPDIR ?= $(shell [ "$$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ] \
	&& [ "$$(df --output=avail -B1G /dev/shm | tail -1)" -ge 8 ] \
	&& [ "$$(awk '/^MemAvailable/ {print int($$2 / 1048576)}' /proc/meminfo)" -ge 8 ] \
	&& echo /dev/shm)
test: $(VENV)/.compiled $(BQEMULATOR)/.installed
	PYTHONDONTWRITEBYTECODE= $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR)) \
		$(VENV)/bin/pytest -n $$(( $$(nproc) * 3 / 2 )) --dist loadgroup

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests $(wildcard bench)
	$(VENV)/bin/ruff format --check src tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The servers bench/files.py measures our edge against, in a virtualenv of their own (never
# in the project's locked environment).
PEERS := .tools/peers
bench-peers: $(PEERS)/.installed
$(PEERS)/.installed: $(UV)
	$(UV) venv --quiet --allow-existing $(PEERS)
	$(UV) pip install --quiet --python $(PEERS)/bin/python pypiserver==2.4.2 devpi-server==6.20.3
	touch $@

clean:
	rm -rf $(VENV) .tools var
