# Two entry points: `make demo` runs the main job on the default workload,
# `make test` runs the test suite. Both build .venv first; the demo skips the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/sparseloom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/sparseloom

$(BIN)/pytest: $(BIN)/sparseloom
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/pytest

install: $(BIN)/sparseloom

demo: install
	$(BIN)/sparseloom demo

# Two workers: the suite is mostly single-threaded imports, compiles and subprocesses, and took
# 580-640 s alone on the 2-core host. Tests marked wallclock judge the real runtime's latencies,
# which a neighbouring test would skew, so they run afterwards on their own.
test: $(BIN)/pytest
	$(BIN)/python -m pytest -n 2 -m "not wallclock"
	$(BIN)/python -m pytest -m wallclock

clean:
	rm -rf $(VENV) .cache out
