"""Helpers for unit tests of the collection's modules."""

import contextlib
import json

import pytest

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19: the same, by hand
    from ansible.module_utils import basic
    from ansible.module_utils.common import warnings as module_warnings
    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args):
        """A module run in this process gets ``args``; it starts without the warnings of the
        runs before it (they are global before 2.19, and each real module run is a process)."""
        previous = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))  # pylint: disable=protected-access
        del module_warnings._global_warnings[:]  # pylint: disable=protected-access
        del module_warnings._global_deprecations[:]  # pylint: disable=protected-access
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = previous  # pylint: disable=protected-access


class ModuleExit(Exception):
    """Raised in place of sys.exit so a test can read what the module returned."""


def run_module(main, args, capsys, check_mode=False, diff=False):
    """Run a module's ``main()`` with ``args`` and return its result as a dict.

    The result has ``failed`` True when the module called fail_json.
    """
    module_args = dict(args)
    module_args['_ansible_check_mode'] = check_mode
    module_args['_ansible_diff'] = diff
    capsys.readouterr()  # drop anything printed before
    with patch_module_args(module_args):
        with pytest.raises(SystemExit):
            main()
    out = capsys.readouterr().out
    return json.loads(out)


@pytest.fixture
def module_runner(capsys):
    """``module_runner(main, args, check_mode=False, diff=False)`` -> result dict."""
    def runner(main, args, check_mode=False, diff=False):
        return run_module(main, args, capsys, check_mode=check_mode, diff=diff)
    return runner


@pytest.fixture(scope='session')
def key_files(tmp_path_factory):
    """Real ECDSA P-256 keys (fast to make), made once: the devices' key ('pkc') and another
    product's ('other'), with their PublicKeyHash as the lab's tegrasign_v3.py derives it."""
    from lab import keys  # pylint: disable=import-outside-toplevel  # the lab is on the tests' path
    root = tmp_path_factory.mktemp('fuse-keys')
    made = dict((name, keys.make_pkc_key(str(root / ('%s.pem' % name)), 'ecp256')) for name in ('pkc', 'other'))
    return dict(made, hashes=dict((name, keys.pkc_key_hash(path)) for name, path in made.items()))
