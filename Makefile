# Grainbox: every target sets itself up from nothing (apt packages when root, the virtual
# environment, Python packages), so a fresh clone needs only `make demo` or `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Debian packages the tests and the demo drive for real: Pd (and rev3~ from extra), liblo's
# oscsend/oscdump, PortAudio for sounddevice, libsndfile, sshd for flash tests, shellcheck and
# systemd-analyze for deploy checks, Xvfb for the patch screenshot, puredata-gui for `make play`,
# iproute2 for the network-namespace tests.
APT_PACKAGES := puredata-core puredata-extra puredata-gui liblo-tools libportaudio2 libsndfile1 \
	openssh-server openssh-client shellcheck systemd xvfb rsync iproute2

# Debian packages `make pi-check` needs on this machine (the emulated Raspberry Pi): mmdebstrap and
# arch-test build the arm64 root, qemu-user-static and binfmt-support run it, GNU time measures the
# guest's peak memory, liblo-tools' oscsend moves a knob. Pd comes from the root's own arm64 Debian Pd.
PI_APT_PACKAGES := mmdebstrap arch-test qemu-user-static binfmt-support time liblo-tools

# `make pd-pictures` only: ImageMagick's import takes a window's picture, xdotool finds the window.
PICTURE_APT_PACKAGES := imagemagick xdotool

.PHONY: setup apt venv test lint demo play baseline factory-model bench clean pi-apt pi-check pi-check-no-liblo \
	pd-pictures

setup: apt venv

# $(call apt_install,PACKAGES): install the missing ones as root, else print the sudo line and fail.
define apt_install
	@missing=""; for p in $(1); do \
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
endef

apt:
	$(call apt_install,$(APT_PACKAGES))

pi-apt:
	$(call apt_install,$(PI_APT_PACKAGES))

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(PY) -m ruff check .

# The tests, then (as root) the box installed and played on an emulated Raspberry Pi: what CI runs.
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory pi-check; \
	else echo "not run: the box on an emulated Pi needs root (sudo make pi-check)"; fi

DEMO_SECONDS ?= 24
# MODEL=path.ts: the model demo and play use (relative to this folder, or absolute); unset: models/factory.ts.
MODEL ?=
MODEL_ARG = $(if $(strip $(MODEL)),--model '$(strip $(MODEL))')

# The main job: about 24 s of the instrument played by a script through the real runtime and headless Pd,
# with the factory model (or MODEL) -> out/demo.wav (played live when there is a sound card) and out/demo.png.
demo: setup
	DEMO_SECONDS=$(DEMO_SECONDS) $(PY) -m desktop demo $(MODEL_ARG)

# The same with the Pd window open: play the virtual knobs; close Pd or press Ctrl-C to finish.
play: setup
	$(PY) -m desktop demo --gui $(MODEL_ARG)

baseline: setup
	$(PY) -m trainer baseline --data synth

# The box installed by deploy/setup-pi.sh into an emulated Raspberry Pi (Debian bookworm arm64 under
# qemu-user, QEMU_CPU cortex-a72 and cortex-a76) and played against its own Pd: deploy/pi-check.sh.
# Root only. The installed root is cached in /var/cache/grainbox (6.5 minutes from nothing here, 1.5 with it).
pi-check: pi-apt venv
	deploy/pi-check.sh

# pi-check on a box whose liblo binding is hidden: must fail (exit 1), naming the binding's packages.
pi-check-no-liblo: pi-apt venv
	PI_CHECK_HIDE_LIBLO=1 deploy/pi-check.sh

clean:
	rm -rf out runs .cache

# docs/pd/*.png: main.pd and every abstraction's inside, drawn by the real Pd GUI under Xvfb.
pd-pictures: apt
	$(call apt_install,$(PICTURE_APT_PACKAGES))
	xvfb-run -a -s "-screen 0 1280x900x24" pd/screenshot.sh docs/pd

# Every benchmark, one after another (about an hour on 2 cores; each prints its own table).
bench: setup
	$(PY) -m bench.pca_baseline
	$(PY) -m bench.decode
	$(PY) -m bench.pd_render
	$(PY) -m bench.latency
	$(PY) -m bench.grain_vae
	$(PY) -m bench.mnist

# The factory model (models/factory.ts, the runtime's default): the project's own trainer on the built-in
# synth set, seed 0, a fixed step count on one thread (deterministic on a given machine), then export,
# check, and its figures beside it. About 10 minutes on one core (harmonic decoder, 12,000 steps).
FACTORY_RUN := runs/factory
factory-model: setup
	rm -rf $(FACTORY_RUN)
	$(PY) -m trainer train --data synth --out $(FACTORY_RUN) --decoder harmonic --latent-dim 16 \
		--steps 12000 --warmup-steps 3000 --eval-every 1000 --seed 0 --threads 1 --no-progress
	$(PY) -m trainer export $(FACTORY_RUN) --out models/factory.ts --name factory-synth
	$(PY) -m runtime check models/factory.ts
	mkdir -p models/factory
	cp $(FACTORY_RUN)/plots/loss_curves.png $(FACTORY_RUN)/plots/traversals.png \
		$(FACTORY_RUN)/plots/latent_pca.png $(FACTORY_RUN)/metrics.json models/factory/
