# Grainbox: every target sets itself up from nothing (apt packages when root, the virtual
# environment, Python packages), so a fresh clone needs only `make demo` or `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Debian packages the tests and the demo drive for real: Pd (and rev3~ from extra), liblo's
# oscsend/oscdump, PortAudio for sounddevice, libsndfile, sshd for flash tests, shellcheck and
# systemd-analyze for deploy checks, Xvfb for the patch screenshot, puredata-gui for `make play`.
APT_PACKAGES := puredata-core puredata-extra puredata-gui liblo-tools libportaudio2 libsndfile1 \
	openssh-server openssh-client shellcheck systemd xvfb rsync

.PHONY: setup apt venv test lint demo play baseline factory-model bench clean

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing apt packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing system packages:$$missing"; \
			echo "run: sudo apt-get install -y$$missing"; exit 1; \
		fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(PY) -m ruff check .

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

DEMO_SECONDS ?= 20

# The main job: about 20 s of the instrument played by a script through the real runtime and headless Pd,
# with the factory model -> out/demo.wav (played live when there is a sound card) and out/demo.png.
demo: setup
	DEMO_SECONDS=$(DEMO_SECONDS) $(PY) -m runtime.demo

# The same with the Pd window open: play the virtual knobs; close Pd or press Ctrl-C to finish.
play: setup
	$(PY) -m runtime.demo --gui

baseline: setup
	$(PY) -m trainer baseline --data synth

clean:
	rm -rf out runs .cache

# Every benchmark, one after another (about an hour on 2 cores; each prints its own table).
bench: setup
	$(PY) bench/pca_baseline.py
	$(PY) bench/decode.py
	$(PY) bench/pd_render.py
	$(PY) bench/latency.py
	$(PY) bench/grain_vae.py
	$(PY) bench/mnist.py

# The factory model (models/factory.ts, the runtime's default): the project's own trainer on the built-in
# synth set, seed 0, a fixed step count on one thread (deterministic on a given machine), then export,
# check, and its figures beside it. About 7 minutes on one core.
FACTORY_RUN := runs/factory
factory-model: setup
	rm -rf $(FACTORY_RUN)
	$(PY) -m trainer train --data synth --out $(FACTORY_RUN) --decoder noise --latent-dim 16 \
		--steps 6000 --warmup-steps 1500 --eval-every 500 --seed 0 --threads 1 --no-progress
	$(PY) -m trainer export $(FACTORY_RUN) --out models/factory.ts --name factory-synth
	$(PY) -m runtime check models/factory.ts
	mkdir -p models/factory
	cp $(FACTORY_RUN)/plots/loss_curves.png $(FACTORY_RUN)/plots/traversals.png \
		$(FACTORY_RUN)/plots/latent_pca.png $(FACTORY_RUN)/metrics.json models/factory/
