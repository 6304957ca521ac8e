"""Test-wide set-up: make the repository importable as ``ansible_collections.azaion.jetson``.

The repository root is the collection root. Ansible, and Python imports of
``ansible_collections.azaion.jetson...``, find a collection only inside an
``ansible_collections/<namespace>/<name>`` directory, so the tests link the checkout into such
a tree under ``build/`` (see lab/labkit.py) and put it first on the import and collection paths.
"""

import os
import sys

from ansible.plugins.loader import init_plugin_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig

from lab import labkit

COLLECTIONS_ROOT = labkit.link_collection()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
os.environ['ANSIBLE_COLLECTIONS_PATH'] = COLLECTIONS_ROOT
# Ansible's collection loader must own ``ansible_collections`` before any test imports from it,
# or the collection's plugins load without its metadata. pytest-ansible installs it (with
# ansible-core 2.19); without that plugin (an older ansible-core), this does.
if AnsibleCollectionConfig.collection_finder is None:
    init_plugin_loader([COLLECTIONS_ROOT])
