"""``make bench`` (second part): batch makespan and the cost of per-port working trees.

1. Makespan: N = 12 devices on 12 ports of one lab station whose fake NVIDIA tools model the
   station's shared state (device instances, NFS exports, udev rules, board probes). Each
   device's image generation (flash_image_mode per_device) takes a simulated G seconds and its
   flash T seconds. The whole
   azaion.jetson.provision playbook runs with P = 4 slots, then with P = 1 (one flash at a time,
   though a generation still overlaps the flash before it). The makespan runs from the first image generation's start to the last flash's end
   (the fake tools' own records), printed next to the ideal ceil(N / P) x (G + T) and to
   N x (G + T), strictly one device after another, with the whole run's wall-clock time.
2. Working trees: a bundle of about 50,000 files is cloned into the station's staging tree
   and then into one working tree per port, the way the rootfs role does. That is compared
   with a plain full copy of the same bundle (``cp -a``) made in the same run, in time and in
   disk blocks.

It asserts nothing about speed: the figures are for reading.
"""

import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import l4t_bundle, labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.admin_api import LabAdminAPI  # noqa: E402  pylint: disable=wrong-import-position

labkit.link_collection()
sys.path.insert(0, labkit.COLLECTIONS_ROOT)
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree  # noqa: E402  pylint: disable=wrong-import-position,import-error

DEVICES = int(os.environ.get('BENCH_FLASH_DEVICES', '12'))
CONCURRENCY = int(os.environ.get('BENCH_FLASH_CONCURRENCY', '4'))
FLASH_SECONDS = float(os.environ.get('BENCH_FLASH_SECONDS', '6'))
GENERATE_SECONDS = float(os.environ.get('BENCH_GENERATE_SECONDS', '4'))
BUNDLE_FILES = int(os.environ.get('BENCH_BUNDLE_FILES', '50000'))
PORT_TREES = int(os.environ.get('BENCH_PORT_TREES', '4'))


def batch_makespan(concurrency):
    """Run the playbook over a fresh lab; return (whole run seconds, makespan seconds)."""
    ports = dict(('1-%d' % number, '7523') for number in range(1, DEVICES + 1))
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
        lab = labkit.FactoryLab(os.path.join(root, 'lab'), ports, flash_seconds=FLASH_SECONDS,
                                generate_seconds=GENERATE_SECONDS)
        lab.start_loaders(api.url)
        try:
            hosts = dict(('AZJN-%04d' % number, lab.host_vars(port)) for number, port in enumerate(ports, start=1))
            # Every device generates its own images here (image groups: image_bench.py).
            group_vars = dict(lab.group_vars(), jetson_flash_concurrency=concurrency, flash_image_mode='per_device')
            inventory = labkit.write_inventory(os.path.join(root, 'hosts.yml'), hosts, group_vars)
            secrets_file = os.path.join(root, 'secrets.json')
            with open(secrets_file, 'w') as secrets_vars:
                json.dump({'jetson_default_user_password': secrets.token_hex(12)}, secrets_vars)
            started = time.monotonic()
            result = labkit.run_playbook(inventory, args=['--forks', str(DEVICES), '-e', '@' + secrets_file],
                                         env={'AZAION_ADMIN_API_URL': api.url, 'AZAION_ADMIN_API_TOKEN': token})
            elapsed = time.monotonic() - started
            if result.returncode != 0:
                sys.exit('the batch failed:\n%s\n%s' % (result.stdout[-3000:], result.stderr[-2000:]))
            runs = l4t_bundle.flash_runs(lab.lab_state)
            assert len(runs) == DEVICES and all(run['exit'] == 0 for run in runs)
            generations = [call for call in l4t_bundle.tool_calls(lab.lab_state)
                           if call['tool'] == 'l4t_initrd_flash_internal.sh' and '--no-flash' in call['argv']]
            assert len(generations) == DEVICES
            return elapsed, max(run['end'] for run in runs) - min(call['start'] for call in generations)
        finally:
            lab.stop_loaders()


def disk_kib(*paths):
    """Disk used by ``paths`` together (du counts a hard-linked file once per call)."""
    output = subprocess.run(['du', '-sk', '--total'] + list(paths), capture_output=True, text=True, check=True).stdout
    return int(output.splitlines()[-1].split()[0])


def working_trees():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, 'state'))
        os.makedirs(os.path.join(root, 'sysfs'))
        bundle = l4t_bundle.make_bundle(os.path.join(root, 'bundle'), os.path.join(root, 'state'),
                                        os.path.join(root, 'sysfs'), filler_files=BUNDLE_FILES)
        files = sum(len(names) for _dir, _dirs, names in os.walk(bundle))
        bundle_kib = disk_kib(bundle)

        started = time.monotonic()
        subprocess.run(['cp', '-a', bundle, os.path.join(root, 'full-copy')], check=True)
        copy_seconds = time.monotonic() - started
        copy_kib = disk_kib(bundle, os.path.join(root, 'full-copy')) - bundle_kib

        staging = os.path.join(root, 'station', 'staging', 'Linux_for_Tegra')
        started = time.monotonic()
        clone_tree(bundle, staging, ['bootloader', 'tools/kernel_flash', 'rootfs'])
        staging_seconds = time.monotonic() - started
        staging_kib = disk_kib(bundle, staging) - bundle_kib

        port_seconds, port_kib = [], []
        trees = []
        for number in range(1, PORT_TREES + 1):
            tree = os.path.join(root, 'station', 'ports', '1-%d' % number, 'Linux_for_Tegra')
            started = time.monotonic()
            clone_tree(staging, tree, ['bootloader', 'tools/kernel_flash', 'rootfs/boot'], preserve=['rootfs/etc/azaion'])
            port_seconds.append(time.monotonic() - started)
            port_kib.append(disk_kib(bundle, staging, *(trees + [tree])) - disk_kib(bundle, staging, *trees))
            trees.append(tree)
    return dict(files=files, bundle_kib=bundle_kib, copy_seconds=copy_seconds, copy_kib=copy_kib,
                staging_seconds=staging_seconds, staging_kib=staging_kib,
                port_seconds=sum(port_seconds) / len(port_seconds), port_kib=sum(port_kib) / len(port_kib))


def main():
    ideal = math.ceil(DEVICES / CONCURRENCY) * (GENERATE_SECONDS + FLASH_SECONDS)
    parallel_run, parallel_span = batch_makespan(CONCURRENCY)
    serial_run, serial_span = batch_makespan(1)
    print('batch makespan: N=%d devices on %d ports, simulated generation G=%.0f s and flash T=%.0f s each'
          % (DEVICES, DEVICES, GENERATE_SECONDS, FLASH_SECONDS))
    print('%-44s %12s %14s' % ('', 'makespan s', 'whole run s'))
    print('%-44s %12.1f %14s' % ('ideal ceil(N/P) x (G+T), P=%d' % CONCURRENCY, ideal, '-'))
    print('%-44s %12.1f %14.1f' % ('azaion.jetson.provision, P=%d' % CONCURRENCY, parallel_span, parallel_run))
    print('%-44s %12.1f %14.1f' % ('one slot, P=1 (generation still overlaps)', serial_span, serial_run))
    print('%-44s %12.1f %14s' % ('strictly one after another, N x (G+T)', DEVICES * (GENERATE_SECONDS + FLASH_SECONDS),
                                 '-'))
    print('ratios: makespan P=%d / ideal %.2f (goal <= 1.10); P=%d / one at a time: makespan %.2f, whole run %.2f'
          % (CONCURRENCY, parallel_span / ideal, CONCURRENCY, parallel_span / serial_span, parallel_run / serial_run))
    print('        makespan P=%d / strictly one after another %.2f'
          % (CONCURRENCY, parallel_span / (DEVICES * (GENERATE_SECONDS + FLASH_SECONDS))))

    trees = working_trees()
    print()
    print('per-port working trees of a bundle of %d files (%.0f MiB)' % (trees['files'], trees['bundle_kib'] / 1024.0))
    print('%-34s %10s %14s' % ('', 'seconds', 'new disk MiB'))
    print('%-34s %10.2f %14.1f' % ('full copy (cp -a), baseline', trees['copy_seconds'], trees['copy_kib'] / 1024.0))
    print('%-34s %10.2f %14.1f' % ('station staging tree (clone)', trees['staging_seconds'], trees['staging_kib'] / 1024.0))
    print('%-34s %10.2f %14.1f' % ('one port tree (clone, mean of %d)' % PORT_TREES, trees['port_seconds'], trees['port_kib'] / 1024.0))
    print('ratios port tree / full copy: time %.2f, disk %.3f'
          % (trees['port_seconds'] / trees['copy_seconds'], trees['port_kib'] / float(trees['copy_kib'])))


if __name__ == '__main__':
    main()
