"""Helpers for unit tests of the collection's modules."""

import json

import pytest

from ansible.module_utils.testing import patch_module_args


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
