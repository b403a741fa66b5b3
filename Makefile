# emotk developer entry points. `make demo` and `make test` set everything up on a fresh Debian/Ubuntu machine
# (CPU-only lock in requirements/cpu.txt; system packages espeak-ng for the demo corpus, ffmpeg for MELD tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1

.PHONY: setup setup-demo system-demo system-test demo test lint bench clean

$(BIN)/emotk: pyproject.toml requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools<82" wheel
	$(BIN)/pip install -q -c requirements/cpu.txt -e ".[dev]"
	touch $@

system-demo:
	@command -v espeak-ng >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng >/dev/null)

system-test: system-demo
	@command -v ffmpeg >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg >/dev/null)

setup-demo: system-demo $(BIN)/emotk
setup: system-test $(BIN)/emotk

demo: setup-demo
	$(BIN)/emotk demo --overwrite

test: setup
	$(BIN)/python -m pytest -q

lint: $(BIN)/emotk
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) emotk-demo .pytest_cache
