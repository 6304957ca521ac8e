"""One remote lab station, run INSIDE the station's namespaces (its sshd's mount and network).

The suite's set-up starts it with ``nsenter`` into the namespaces of the station's sshd, so
every path it builds is a path of the station (under the mount point that only this station
has), and its Loaders listen on the station's own loopback, where the devices' USB network
would be on a real station:

    python station.py --root /srv/azaion-station/lab --ports 1-1=7523,1-2=7623
                      --flash-seconds 1 --admin-api-url http://10.231.7.1:4321 --info-file F

It builds a labkit.FactoryLab under ``--root`` (fake L4T bundle, fake USB tree, host root,
sample rootfs), boots one Loader per port, writes ``--info-file`` (JSON: the station's
inventory settings and each port's Loader URL, as the station reaches it) and serves the
Loaders until SIGTERM. Standard library and the lab only.
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: the lab package
from lab import labkit  # noqa: E402  pylint: disable=wrong-import-position
from lab.serving import write_atomically  # noqa: E402  pylint: disable=wrong-import-position

# The settings the collection takes on the station's own host (see README, "Per station").
STATION_SETTINGS = ('jetson_l4t_dir', 'jetson_workdir', 'jetson_usb_sysfs_root', 'jetson_station_root')
CONTROLLER_SETTINGS = ('jetson_station', 'jetson_report_dir')


def parse_ports(text):
    """``1-1=7523,1-2=7623`` -> {'1-1': '7523', '1-2': '7623'} (USB port -> product id)."""
    return dict(item.split('=', 1) for item in text.split(','))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Build and serve one lab station inside its namespaces.')
    parser.add_argument('--root', required=True, help='where the lab goes, a path of the station')
    parser.add_argument('--ports', required=True, type=parse_ports, help='PORT=PRODUCT,...')
    parser.add_argument('--flash-seconds', type=float, default=1.0)
    parser.add_argument('--admin-api-url', required=True, help='the admin API as the station reaches it')
    parser.add_argument('--info-file', required=True, help='where to write the station settings (JSON)')
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lab = labkit.FactoryLab(args.root, args.ports, flash_seconds=args.flash_seconds)
    lab.start_loaders(args.admin_api_url)
    try:
        settings = lab.group_vars()
        info = {
            'station_settings': dict((name, settings[name]) for name in STATION_SETTINGS),
            # Less the controller's own settings: the station, and where the controller keeps reports.
            'batch_settings': dict((name, value) for name, value in settings.items()
                                   if name not in STATION_SETTINGS + CONTROLLER_SETTINGS),
            'loader_urls': dict((port, lab.loaders.url(port)) for port in args.ports),
            'lab_state': lab.lab_state,
        }
        # Written last and atomically: the suite waits for it as the sign the station is ready.
        write_atomically(args.info_file, json.dumps(info, indent=2))
        while not stop.wait(0.2):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        lab.stop_loaders()
    return 0


if __name__ == '__main__':
    sys.exit(main())
