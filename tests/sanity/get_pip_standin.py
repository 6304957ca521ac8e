"""Stand-in for the get-pip bootstrap script that ``ansible-test --venv`` downloads.

ansible-test bootstraps pip into each fresh virtual environment by running a ``get-pip``
script it downloads from a host outside the package registries; it first looks for a cached
copy at ``~/.ansible/test/cache/get_pip_<version>.py``. ``make sanity`` puts this file there
when the real one is missing: it installs pip from the interpreter's own ``ensurepip``, then
lets that pip install what ansible-test asked for (the pinned pip itself) from the package
index. get-pip's own ``--no-setuptools``/``--no-wheel`` flags mean "do not add them", which is
already pip's behaviour, so they are dropped.
"""

import subprocess
import sys

GET_PIP_ONLY_FLAGS = ('--no-setuptools', '--no-wheel')


def main():
    pip_arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY_FLAGS]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + pip_arguments)


if __name__ == '__main__':
    main()
