"""A small lab station for tests of the station-side helpers: a fake bundle whose tools look at a
fake USB sysfs with an Orin Nano 8GB on port 1-3. A test module imports the fixture
(``from lab.bundle_lab import bundle_lab``) and asks for it as ``lab``."""

import types

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs


@pytest.fixture(name='lab')
def bundle_lab(tmp_path):
    """``sysfs``, ``state`` (the lab's records), ``tree`` (the bundle) and ``work`` (a workdir)."""
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-3': '7523'})
    state = str(tmp_path / 'lab-state')
    return types.SimpleNamespace(sysfs=sysfs, state=state, tree=l4t_bundle.make_bundle(str(tmp_path / 'bundle'), state, sysfs),
                                 work=str(tmp_path / 'work'))
