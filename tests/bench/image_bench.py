"""``make bench`` (third part): one image generation per image group against one per device.

N devices of one board on N ports of one lab station, P = 10 flash slots. The lab's NVIDIA
tools take a simulated G = 8 s per image generation and T = 2 s per flash. The whole
azaion.jetson.provision playbook runs twice over fresh labs, with ``flash_image_mode: per_device``
(every device generates its own images, the baseline) and ``shared`` (one generation per image
group, each flash its own APP image made in bytes), at N = 24 and N = 100. Printed per run:

- the image generations;
- the makespan, from the first generation's start to the last flash's end (the fake tools' own
  records), and its ratio to the ideal G + ceil(N / P) x T (one generation, then the flashes
  P at a time);
- the peak disk of the images under jetson_workdir (the groups' image sets, the slots' copies, a
  device's own APP images; sampled every 0.2 s, each inode once), against one image set plus P
  copies of system.img;
- the per-device preparation (cutting the slot's copy back, the device's members, the
  checksum, the read-back) as a fraction of a flash.

It asserts nothing about speed: the figures are for reading.
"""

import glob
import json
import math
import os
import secrets
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import l4t_bundle, labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.admin_api import LabAdminAPI  # noqa: E402  pylint: disable=wrong-import-position

SIZES = [int(size) for size in os.environ.get('BENCH_IMAGE_DEVICES', '24,100').split(',')]
CONCURRENCY = int(os.environ.get('BENCH_IMAGE_CONCURRENCY', '10'))
FLASH_SECONDS = float(os.environ.get('BENCH_IMAGE_FLASH_SECONDS', '2'))
GENERATE_SECONDS = float(os.environ.get('BENCH_IMAGE_GENERATE_SECONDS', '8'))


# Where a station's images are: each group's image set and its slots' trees, and a device's own
# APP images in its port tree (the lab's bundle ships a bootloader/system.img of its own, which
# every port tree copies: not an image of this run).
IMAGE_GLOBS = ['images/*/Linux_for_Tegra/tools/kernel_flash/images', 'images/*/Linux_for_Tegra/bootloader/system.img',
               'images/*/Linux_for_Tegra/bootloader/system.img.raw', 'images/*/slot-*/Linux_for_Tegra/tools/kernel_flash/images',
               'ports/*/Linux_for_Tegra/tools/kernel_flash/images']


def image_disk_bytes(workdir):
    """The disk the images under ``workdir`` take, each inode once (hard links share one)."""
    seen, total = set(), 0
    for pattern in IMAGE_GLOBS:
        for top in glob.glob(os.path.join(workdir, pattern)):
            paths = [top] if os.path.isfile(top) else [
                os.path.join(root, name) for root, _dirs, names in os.walk(top) for name in names]
            for path in paths:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if (st.st_dev, st.st_ino) not in seen and os.path.isfile(path) and not os.path.islink(path):
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size  # as the group's record counts it (the lab's images are KiB: no block rounding)
    return total


class PeakDisk(threading.Thread):
    """The most disk the station's images take while the batch runs (sampled every 0.2 s)."""

    def __init__(self, workdir):
        super().__init__(daemon=True)
        self.workdir, self.peak, self.done = workdir, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            self.peak = max(self.peak, image_disk_bytes(self.workdir))


def batch(devices, mode):
    ports = dict(('%d-%d' % (1 + number // 100, 1 + number % 100), '7523') for number in range(devices))
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as root, LabAdminAPI(token=token) as api:
        lab = labkit.FactoryLab(os.path.join(root, 'lab'), ports, flash_seconds=FLASH_SECONDS,
                                generate_seconds=GENERATE_SECONDS)
        lab.start_loaders(api.url)
        try:
            hosts = dict(('AZJN-%04d' % number, lab.host_vars(port)) for number, port in enumerate(ports, start=1))
            group_vars = dict(lab.group_vars(), jetson_flash_concurrency=CONCURRENCY, flash_image_mode=mode)
            inventory = labkit.write_inventory(os.path.join(root, 'hosts.yml'), hosts, group_vars)
            secrets_file = os.path.join(root, 'secrets.json')
            with open(secrets_file, 'w') as secrets_vars:
                json.dump({'jetson_default_user_password': secrets.token_hex(12)}, secrets_vars)
            peak = PeakDisk(lab.workdir)
            peak.start()
            result = labkit.run_playbook(inventory, args=['--forks', '16', '-e', '@' + secrets_file],
                                         env={'AZAION_ADMIN_API_URL': api.url, 'AZAION_ADMIN_API_TOKEN': token})
            peak.done.set()
            peak.join()
            if result.returncode != 0:
                sys.exit('the batch failed:\n%s\n%s' % (result.stdout[-3000:], result.stderr[-2000:]))
            runs = l4t_bundle.flash_runs(lab.lab_state)
            assert len(runs) == devices and all(run['exit'] == 0 for run in runs)
            generations = [call for call in l4t_bundle.tool_calls(lab.lab_state)
                           if call['tool'] == 'l4t_initrd_flash_internal.sh' and '--no-flash' in call['argv']]
            flashes, prepares, tools = [], [], []
            for state_path in glob.glob(os.path.join(lab.workdir, 'devices', '*', 'state.json')):
                with open(state_path) as state:
                    flash = json.load(state)['phases']['flash']
                flashes += [part['finished'] - part['started'] for part in flash['segments'] if part['name'] == 'flash']
                if flash.get('prepare_seconds') is not None:
                    prepares.append(flash['prepare_seconds'])
                tools.append(flash['tool_seconds'])
            image_set = app = 0
            for record_path in glob.glob(os.path.join(lab.workdir, 'images', '*', 'group.json')):
                with open(record_path) as record:
                    group = json.load(record)
                image_set, app = group['image_set_bytes'], group['app_bytes']
            # What the lab's tools really took, from their start to their exit as the flash ran them
            # (each lab flash also boots, reboots and waits for its device): the ideal is made of these.
            tool_flash = sum(tools) / len(tools)
            tool_generation = max(call['end'] - call['start'] for call in generations)
            return dict(generations=len(generations), peak=peak.peak, image_set=image_set, app=app,
                        makespan=max(run['end'] for run in runs) - min(call['start'] for call in generations),
                        prepare=(sum(prepares) / len(prepares)) if prepares else None,
                        flash=sum(flashes) / len(flashes), tool_flash=tool_flash, tool_generation=tool_generation)
        finally:
            lab.stop_loaders()


def main():
    print('image groups: N devices of one board, P=%d slots; the lab tools simulate a generation of G=%.0f s and a'
          ' flash of T=%.0f s' % (CONCURRENCY, GENERATE_SECONDS, FLASH_SECONDS))
    print('ideal = G + ceil(N/P) x T with G and T as the lab\'s tools took them in the run (T: the flash tool from its'
          ' start to its exit, as the flash phase ran it; a lab flash also boots and waits for its device)')
    print('%-5s %-11s %11s %10s %8s %8s %9s %12s %15s %13s' % (
        'N', 'mode', 'generations', 'makespan', 'G', 'T', 'ideal', 'makespan/', 'peak disk KiB', 'prep / flash'))
    for devices in SIZES:
        rounds = math.ceil(devices / float(CONCURRENCY))
        for mode in ('per_device', 'shared'):
            figures = batch(devices, mode)
            ideal = figures['tool_generation'] + rounds * figures['tool_flash']
            prep = '-' if figures['prepare'] is None else '%.2f %%' % (100.0 * figures['prepare'] / figures['flash'])
            print('%-5d %-11s %11d %9.1fs %7.1fs %7.1fs %8.1fs %12.2f %15.0f %13s' % (
                devices, mode, figures['generations'], figures['makespan'], figures['tool_generation'],
                figures['tool_flash'], ideal, figures['makespan'] / ideal, figures['peak'] / 1024.0, prep))
            if mode == 'shared':
                bound = figures['image_set'] + CONCURRENCY * figures['app']
                print('      one image set + %d copies of system.img = %.0f KiB; peak / that = %.2f'
                      % (CONCURRENCY, bound / 1024.0, figures['peak'] / float(bound)))
    print('goals: at N=100, shared makespan <= 1.15 x ideal and per_device >= 2 x; preparation < 2 % of a flash')


if __name__ == '__main__':
    main()
