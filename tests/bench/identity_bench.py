"""``make bench``: the identity phase for 50 devices, against a builtins-only playbook.

Both playbooks run over the same inventory, with the same forks, against the lab admin API on
loopback, on a fresh batch (first run) and again (re-run). Prints wall-clock times, admin-API
writes, and the ratios of the collection against the baseline measured in this same run. It
asserts nothing about speed: figures are for reading.
"""

import os
import secrets
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.admin_api import LabAdminAPI  # noqa: E402  pylint: disable=wrong-import-position

DEVICES = int(os.environ.get('BENCH_DEVICES', '50'))
FORKS = os.environ.get('BENCH_FORKS', '10')
BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'builtins_identity.yml')
# The identity role on its own: the phase the baseline does the same job as.
IDENTITY = os.path.join(labkit.REPO_ROOT, 'tests', 'integration', 'playbooks', 'identity.yml')


def prepare(root, api):
    devices = dict(('AZJN-%04d' % number, {}) for number in range(1, DEVICES + 1))
    for device in devices:
        labkit.make_rootfs(os.path.join(root, 'rootfs', device))
    return labkit.write_inventory(os.path.join(root, 'hosts.yml'), devices, {
        'jetson_station': 'localhost',
        'jetson_workdir': os.path.join(root, 'station'),
        'jetson_rootfs_dir': root + '/rootfs/{{ inventory_hostname }}',
        'identity_conf_owner': labkit.SERVICE_USER,
        'identity_conf_group': labkit.SERVICE_USER,
        'azaion_admin_api_url': api.url,
    })


def timed_run(inventory, playbook, api, token):
    writes_before = api.write_count()
    started = time.monotonic()
    result = labkit.run_playbook(inventory, playbook=playbook,
                                 env={'AZAION_ADMIN_API_TOKEN': token, 'ANSIBLE_FORKS': FORKS})
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit('%s failed:\n%s\n%s' % (playbook, result.stdout[-3000:], result.stderr[-3000:]))
    return elapsed, api.write_count() - writes_before


def main():
    token = secrets.token_hex(16)
    figures = {}
    for name, playbook in (('azaion.jetson.identity', IDENTITY), ('builtins (uri + copy)', BASELINE)):
        with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
            inventory = prepare(root, api)
            figures[name] = [timed_run(inventory, playbook, api, token) for _run in ('first', 'rerun')]
            assert len(api.users()) == DEVICES
    print('identity phase, %d devices, forks=%s, lab admin API on loopback' % (DEVICES, FORKS))
    print('%-24s %12s %14s %12s %14s' % ('', 'first run s', 'first writes', 'rerun s', 'rerun writes'))
    for name, ((first, first_writes), (rerun, rerun_writes)) in figures.items():
        print('%-24s %12.1f %14d %12.1f %14d' % (name, first, first_writes, rerun, rerun_writes))
    ours, baseline = figures['azaion.jetson.identity'], figures['builtins (uri + copy)']
    print('ratio collection/builtins: first run %.2f, rerun %.2f' % (ours[0][0] / baseline[0][0], ours[1][0] / baseline[1][0]))


if __name__ == '__main__':
    main()
