# Everything bootstraps from a bare python3: a private uv in .tools/, the locked env in .venv/.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

.PHONY: run test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# C sources too: uv rebuilds the project's extension when they change (pyproject's cache-keys).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock $(wildcard src/pythonhosted/*/*.c)
	$(UV) sync --locked --quiet
	touch $@

run: $(VENV)/.synced
	$(VENV)/bin/pythonhosted serve

# In parallel, one worker per core (pytest-xdist): ports and directories are per test.
test: $(VENV)/.synced
	$(VENV)/bin/pytest -n auto

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests $(wildcard bench)
	$(VENV)/bin/ruff format --check src tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .tools var
