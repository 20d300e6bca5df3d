# Set-up and entry points. The virtual environment lives outside the clone (it holds
SHELL := /bin/bash
# ~5 GB of torch) and is rebuilt only when pyproject.toml changes.
VENV ?= $(HOME)/.cache/explain/venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
OUT ?= demo-out
# Where `explain` is put on PATH: a symbolic link to the environment's console script, in a
# folder every login shell searches (root: /usr/local/bin; others: ~/.local/bin, which
# Debian's ~/.profile adds to PATH when it exists).
BINDIR ?= $(shell [ -w /usr/local/bin ] && echo /usr/local/bin || echo $(HOME)/.local/bin)

.PHONY: setup system launcher demo test bench

system:  ## Debian packages: Fashion-MNIST and Chromium (browser tests)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then \
	  echo "installing Debian packages dataset-fashion-mnist chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    dataset-fashion-mnist chromium >/dev/null; fi

$(STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench]' 2>&1 | grep -v -e "^WARNING: Location" -e "^ *$$" ; test $${PIPESTATUS[0]} -eq 0
	rm -f $(VENV)/.installed-* && touch $@

# $(BINDIR)/explain -> $(VENV)/bin/explain; a file of another program there is left alone
LINK_EXPLAIN = if [ -e $(BINDIR)/explain ] && [ ! -L $(BINDIR)/explain ]; then \
	  echo "$(BINDIR)/explain exists and is not ours: left as it is; run $(VENV)/bin/explain"; \
	else mkdir -p $(BINDIR) && ln -sfn $(abspath $(VENV))/bin/explain $(BINDIR)/explain; fi

setup: system $(STAMP)  ## (re)point the environment's `explain` at this checkout, put it on PATH
	@out=$$($(VENV)/bin/pip install -q --no-deps --no-build-isolation -e . 2>&1) || { echo "$$out"; exit 1; }
	@$(LINK_EXPLAIN)

launcher:  ## only the link on PATH (setup makes it too)
	@$(LINK_EXPLAIN)

demo: setup  ## explain the bundled photos with the default model, and Fashion-MNIST with ABN
	$(VENV)/bin/explain explain/samples/*.jpg --out $(OUT)
	$(VENV)/bin/explain explain/samples/fmnist/*.png --model abn_fmnist --out $(OUT)/abn
	@echo "overlays and panels written to $(OUT)/"
	@echo "next, in a new shell (any photo of yours; explain --help lists every command):"
	@echo "  explain explain/samples/rocket.jpg --methods gradcam,layercam --out my-out"
	@echo "  explain explain/samples/coffee.jpg --model abn --methods abn,gradcam --out my-out   # the ImageNet ABN's own map"

test: setup
	$(PY) -m pytest -n 2 -p no:cacheprovider

bench: setup  ## the quick speed checks: Grad-CAM vs a forward and the peers; CLI start-up
	$(PY) benchmarks/speed.py --quick
	$(PY) benchmarks/startup.py
