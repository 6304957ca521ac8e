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
# ansible-test bootstraps pip from this cache (the version is ansible-test's: 23.1.2 for 2.17).
ANSIBLE_TEST_PIPS := $(HOME)/.ansible/test/cache/get_pip_24_2.py $(HOME)/.ansible/test/cache/get_pip_23_1_2.py
# Whose ansible-test runs the sanity tests: the main venv's, or an older release's (older-cores).
ANSIBLE_TEST_BIN ?= $(CURDIR)/$(BIN)
# meta/runtime.yml claims ansible-core 2.17 and later: these releases run the unit tests and the
# sanity tests too, each from a venv of its own (.venv-core-<release>); 2.19 is the main venv's.
OLDER_CORES := 2.17.14 2.18.19

.PHONY: test demo bench units integration chaos remote sanity older-cores lint docs-lint changelog-lint galaxy-import awx venv clean

test: units integration awx remote sanity older-cores lint docs-lint changelog-lint galaxy-import

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

# Three remote stations in network namespaces, each with its own sshd, provisioned over SSH with
# --become (needs root; the suite installs openssh-server and sudo with apt-get when missing).
# One process: the namespaces and links have fixed names.
remote: $(STAMP)
	$(BIN)/python -m pytest tests/remote -q -p no:xdist

# Every sanity test that applies to the collection, with no ignore file.
sanity: $(STAMP)
	@# ansible-test skips its shellcheck test (the lab's NVIDIA tool doubles) without shellcheck.
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } || echo 'shellcheck is not installed'
	@for pip in $(ANSIBLE_TEST_PIPS); do test -f $$pip || { mkdir -p $$(dirname $$pip); cp tests/sanity/get_pip_standin.py $$pip; }; done
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -z --cached --others --exclude-standard \
	  | xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh \
	  | xargs -0 cp --parents -t $(SANITY_ROOT)
	cd $(SANITY_ROOT) && PATH=$(ANSIBLE_TEST_BIN):$$PATH ansible-test sanity --venv --requirements --python 3.11 --color no

# The unit tests and every sanity test under each release of OLDER_CORES.
older-cores: $(STAMP)
	@set -e; for core in $(OLDER_CORES); do \
	  venv=$(CURDIR)/.venv-core-$$core; \
	  test -f $$venv/.installed || { $(PYTHON) -m venv $$venv && $$venv/bin/python -m pip install --quiet \
	    --disable-pip-version-check "ansible-core==$$core" -r tests/requirements-older-cores.txt && touch $$venv/.installed; }; \
	  echo "ansible-core $$core: unit tests"; \
	  $$venv/bin/python -m pytest tests/unit tests/lab -q -n 2 -p no:cacheprovider; \
	  echo "ansible-core $$core: sanity tests"; \
	  $(MAKE) --no-print-directory sanity ANSIBLE_TEST_BIN=$$venv/bin; \
	done

# ansible-lint resolves the collection's own modules through the same link the tests use.
COLLECTIONS_PATH := $(CURDIR)/build/collections

lint: $(STAMP)
	$(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); from lab import labkit; labkit.link_collection()'
	PATH=$(CURDIR)/$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_PATH) ansible-lint --profile production --offline

# antsibull-docs over the collection as linked under build/collections (the plugin, module and
# role docs with every reference to any collection checked, their generated RST and the guides in
# docs/docsite/rst through rstcheck, the guides' references, links.yml, extra-docs.yml and
# config.yml); it calls ansible-doc, hence the venv first on PATH.
docs-lint: $(STAMP)
	$(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); from lab import labkit; labkit.link_collection()'
	cd $(COLLECTIONS_PATH)/ansible_collections/azaion/jetson && PATH=$(CURDIR)/$(BIN):$$PATH \
	  ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_PATH) $(CURDIR)/$(BIN)/antsibull-docs lint-collection-docs \
	  --plugin-docs --check-extra-docs-refs --validate-collection-refs all --disallow-unknown-collection-refs .
	@# antsibull-docs does not check environment variables: every E(AZAION_...) of the plugin and role docs
	@# and every :envvar: of the guides must be declared in config.yml and defined by an envvar directive.
	@$(BIN)/python -c 'import glob, re, sys, yaml; \
	  declared = set(yaml.safe_load(open("docs/docsite/config.yml"))["envvar_directives"]); \
	  guides = "".join(open(path).read() for path in sorted(glob.glob("docs/docsite/rst/*.rst"))); \
	  defined = set(re.findall(r"^\.\. envvar:: *(\S+)", guides, re.M)); \
	  docs = "".join(open(path).read() for path in glob.glob("plugins/**/*.py", recursive=True) \
	                 + glob.glob("plugins/**/*.yml", recursive=True) + glob.glob("roles/*/meta/argument_specs.yml")); \
	  used = set(re.findall(r":envvar:`([^`]+)`", guides)) | set(re.findall(r"E\((AZAION_\w+)\)", docs)); \
	  problems = ["%s: used but not declared in docs/docsite/config.yml" % name for name in sorted(used - declared)] \
	    + ["%s: declared but not defined by an envvar directive" % name for name in sorted(declared - defined)] \
	    + ["%s: defined by an envvar directive but not declared" % name for name in sorted(defined - declared)]; \
	  sys.exit("\n".join(problems) or None)'

# The fragments, the release history, and CHANGELOG.md as the history generates it.
changelog-lint: $(STAMP)
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	mkdir -p build
	$(BIN)/antsibull-changelog generate --output build/CHANGELOG.generated.md
	cmp build/CHANGELOG.generated.md CHANGELOG.md || { echo "CHANGELOG.md is not what changelogs/changelog.yaml generates: run antsibull-changelog generate"; exit 1; }

# Build the collection as Galaxy gets it and run Galaxy's importer on it; any warning fails.
galaxy-import: $(STAMP)
	rm -rf build/galaxy && mkdir -p build/galaxy
	$(BIN)/ansible-galaxy collection build --output-path build/galaxy
	cd build/galaxy && PATH=$(CURDIR)/$(BIN):$$PATH GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy/galaxy-importer.cfg \
	  $(CURDIR)/$(BIN)/python -m galaxy_importer.main azaion-jetson-*.tar.gz > importer.log 2>&1 \
	  || { cat importer.log; exit 1; }
	@! grep -E '(WARNING|ERROR)' build/galaxy/importer.log || { echo 'galaxy-importer reported the lines above'; exit 1; }
	@tail -1 build/galaxy/importer.log

# AWX assets (extensions/awx): the collection declares no Python or system requirement for an
# execution environment (introspect over the linked collection, as ansible-builder runs it in
# a build), the EE definition is valid (create writes the build context, no container engine
# needed), then the provision playbook under ansible-runner, as an AWX job, leaves no secret.
awx: $(STAMP)
	$(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); from lab import labkit; labkit.link_collection()'
	rm -rf build/awx && mkdir -p build/awx
	$(BIN)/ansible-builder introspect $(COLLECTIONS_PATH) > build/awx/introspect.yml
	$(BIN)/python -c 'import sys, yaml; found = yaml.safe_load(open(sys.argv[1])); \
	  sys.exit(0 if found == {"python": [], "system": []} else "unexpected EE requirements: %s" % found)' build/awx/introspect.yml
	$(BIN)/ansible-builder create -f extensions/awx/execution-environment.yml -c build/awx/context --output-filename Containerfile
	@test -s build/awx/context/Containerfile
	$(BIN)/python -m pytest tests/awx -q -n 2

demo: $(STAMP)
	$(BIN)/python tests/lab/demo.py

bench: $(STAMP)
	$(BIN)/python tests/bench/provision_bench.py
	$(BIN)/python tests/bench/flash_bench.py
	$(BIN)/python tests/bench/fuse_check_bench.py
	$(BIN)/python tests/bench/image_bench.py

clean:
	rm -rf build tests/output .pytest_cache
