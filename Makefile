# azaion.jetson: every set-up and test step, runnable on a fresh machine with Python 3.11.
#   make demo   the main job end to end on the bundled lab
#   make test   the whole test suite (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ansible-test runs only inside ansible_collections/<namespace>/<name>/: a clean copy goes here.
# Outside the checkout: inside it, ansible-test would list files through git and skip the copy.
SANITY_ROOT := $(or $(TMPDIR),/tmp)/azaion.jetson-sanity/ansible_collections/azaion/jetson
ANSIBLE_TEST_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

.PHONY: test demo bench units integration chaos sanity lint changelog-lint galaxy-import venv clean

test: units integration sanity lint changelog-lint galaxy-import

venv: $(STAMP)

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# Two workers: the tests wait on simulated flashes more than they compute (CI has 2 cores).
units: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/lab -q -n 2

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q -n 2

# Faults and kill -9 during real runs over the lab; each scenario's figures are printed at the end.
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos -q -n 2

# Every sanity test that applies to the collection, with no ignore file.
sanity: $(STAMP)
	@# ansible-test skips its shellcheck test (the lab's NVIDIA tool doubles) without shellcheck.
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } || echo 'shellcheck is not installed'
	@test -f $(ANSIBLE_TEST_PIP) || { mkdir -p $(dir $(ANSIBLE_TEST_PIP)); cp tests/sanity/get_pip_standin.py $(ANSIBLE_TEST_PIP); }
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -z --cached --others --exclude-standard \
	  | xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh \
	  | xargs -0 cp --parents -t $(SANITY_ROOT)
	cd $(SANITY_ROOT) && PATH=$(CURDIR)/$(BIN):$$PATH ansible-test sanity --venv --requirements --python 3.11 --color no

# ansible-lint resolves the collection's own modules through the same link the tests use.
COLLECTIONS_PATH := $(CURDIR)/build/collections

lint: $(STAMP)
	$(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); from lab import labkit; labkit.link_collection()'
	PATH=$(CURDIR)/$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_PATH) ansible-lint --profile production --offline

changelog-lint: $(STAMP)
	$(BIN)/antsibull-changelog lint

# Build the collection as Galaxy gets it and run Galaxy's importer on it; any warning fails.
galaxy-import: $(STAMP)
	rm -rf build/galaxy && mkdir -p build/galaxy
	$(BIN)/ansible-galaxy collection build --output-path build/galaxy
	cd build/galaxy && PATH=$(CURDIR)/$(BIN):$$PATH GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy/galaxy-importer.cfg \
	  $(CURDIR)/$(BIN)/python -m galaxy_importer.main azaion-jetson-*.tar.gz > importer.log 2>&1 \
	  || { cat importer.log; exit 1; }
	@! grep -E '(WARNING|ERROR)' build/galaxy/importer.log || { echo 'galaxy-importer reported the lines above'; exit 1; }
	@tail -1 build/galaxy/importer.log

demo: $(STAMP)
	$(BIN)/python tests/lab/demo.py

bench: $(STAMP)
	$(BIN)/python tests/bench/provision_bench.py
	$(BIN)/python tests/bench/flash_bench.py

clean:
	rm -rf build tests/output .pytest_cache
