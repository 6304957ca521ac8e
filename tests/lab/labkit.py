"""The bundled lab, shared by the demo, the integration tests and the benchmarks.

It links the checkout where Ansible finds collections, builds staging rootfs trees that look
like a real image (an etc/passwd with the Loader's service user, absolute symlinks that point
into the station's own /etc when followed from outside), writes inventories and runs
``ansible-playbook`` as a real subprocess.
"""

import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, 'build', 'collections')
PLAYBOOKS_DIR = os.path.join(REPO_ROOT, 'playbooks')
SERVICE_USER = 'azaion'
SERVICE_UID = 1500
SERVICE_GID = 1500


def link_collection():
    """Make ``build/collections/ansible_collections/azaion/jetson`` point at the checkout."""
    namespace_dir = os.path.join(COLLECTIONS_ROOT, 'ansible_collections', 'azaion')
    link = os.path.join(namespace_dir, 'jetson')
    os.makedirs(namespace_dir, exist_ok=True)
    if not os.path.islink(link):
        try:
            os.symlink(REPO_ROOT, link)
        except FileExistsError:  # a parallel test worker made it first
            pass
    return COLLECTIONS_ROOT


def write_file(path, text, mode=0o644):
    """Write ``text`` to ``path`` (directories made) with ``mode``; return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def make_rootfs(root):
    """Create a minimal staging rootfs at ``root`` and return its path."""
    etc = os.path.join(root, 'etc')
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, 'passwd'), 'w') as passwd:
        passwd.write('root:x:0:0:root:/root:/bin/bash\n'
                     'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n'
                     '%s:x:%d:%d:Azaion Loader:/var/lib/azaion:/usr/sbin/nologin\n'
                     % (SERVICE_USER, SERVICE_UID, SERVICE_GID))
    with open(os.path.join(etc, 'group'), 'w') as group:
        group.write('root:x:0:\ndaemon:x:1:\n%s:x:%d:\n' % (SERVICE_USER, SERVICE_GID))
    resolv = os.path.join(etc, 'resolv.conf')
    if not os.path.lexists(resolv):
        # As in NVIDIA's sample rootfs: followed from the station this leads into the
        # station's own /run, which is what device_conf must never do for its own paths.
        os.symlink('/run/systemd/resolve/stub-resolv.conf', resolv)
    return root


def write_inventory(path, devices, group_vars=None, station_vars=None):
    """Write a YAML inventory (JSON is YAML) with ``devices`` (name -> vars) in group jetsons."""
    inventory = {'jetsons': {'hosts': devices, 'vars': dict(group_vars or {})}}
    if station_vars:
        inventory['all'] = {'hosts': {'localhost': station_vars}}
    with open(path, 'w') as inventory_file:
        json.dump(inventory, inventory_file, indent=2)
    return path


def ansible_env(extra=None):
    """The environment for ansible-playbook: this checkout as the collection, quiet defaults."""
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': link_collection(),
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': 'False',
        # The implicit localhost would otherwise run modules with whatever python3 is first.
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
    })
    env.update(extra or {})
    return env


def run_playbook(inventory, playbook='provision.yml', args=(), env=None, timeout=900):
    """Run a playbook of the collection; return the CompletedProcess (text stdout/stderr)."""
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
               '-i', inventory, os.path.join(PLAYBOOKS_DIR, playbook)] + list(args)
    return subprocess.run(command, env=ansible_env(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def play_recap(stdout):
    """Parse PLAY RECAP lines into {host: {'ok': n, 'changed': n, 'failed': n, ...}}."""
    recap = {}
    in_recap = False
    for line in stdout.splitlines():
        if line.startswith('PLAY RECAP'):
            in_recap = True
            continue
        if in_recap and ':' in line and '=' in line:
            host, _colon, counters = line.partition(':')
            recap[host.strip()] = dict((key, int(value)) for key, value in
                                       (item.split('=') for item in counters.split()))
    return recap


def read_device_conf(rootfs_dir):
    """Return the device.conf of a staging rootfs as a dict."""
    with open(os.path.join(rootfs_dir, 'etc', 'azaion', 'device.conf')) as conf:
        return dict(line.split('=', 1) for line in conf.read().splitlines() if '=' in line)


class FactoryLab:  # pylint: disable=too-many-instance-attributes
    """A whole factory station in a directory: a fake L4T bundle, a fake USB tree with Jetsons
    in recovery mode on chosen ports, the station's host root (its /: NFS exports, udev rules,
    gadget interfaces, see l4t_host.py), the sample rootfs tarball, and the station's workdir.

    ``ports`` maps a USB port path to the USB product id of the Jetson on it (7523: Orin Nano
    8GB...). ``flash_seconds``, ``fuse_seconds``, ``boot_seconds``, ``generate_seconds`` and
    ``apply_seconds`` are how long a flash, a fuse burn, the RCM boot of the flashing initrd, an
    initrd flash image generation and apply_binaries.sh take. The Loaders of the devices (one per port) are served by ``loaders``, a
    LabLoaderFleet started by ``start_loaders``.
    """

    SAMPLE_ROOTFS = 'Tegra_Linux_Sample-Root-Filesystem_R36.4.0_aarch64.tbz2'

    def __init__(self, root, ports, flash_seconds=0.0, fuse_seconds=0.0, filler_files=0,  # pylint: disable=too-many-arguments
                 boot_seconds=0.2, generate_seconds=0.0, apply_seconds=0.0):
        from lab import l4t_bundle, l4t_host, usb_sysfs  # pylint: disable=import-outside-toplevel

        self.root = os.path.abspath(str(root))
        self.ports = dict(ports)
        self.lab_state = os.path.join(self.root, 'lab-state')
        self.sysfs = os.path.join(self.root, 'sysfs')
        self.workdir = os.path.join(self.root, 'station')
        self.report_dir = os.path.join(self.root, 'reports')
        os.makedirs(self.lab_state, exist_ok=True)
        self.host_root = l4t_host.make_host_root(os.path.join(self.root, 'host'), self.lab_state)
        usb_sysfs.make_usb_sysfs(self.sysfs, self.ports)
        self.bundle = l4t_bundle.make_bundle(os.path.join(self.root, 'bundle'), self.lab_state, self.sysfs,
                                             flash_seconds=flash_seconds, fuse_seconds=fuse_seconds,
                                             filler_files=filler_files, host_root=self.host_root,
                                             boot_seconds=boot_seconds, generate_seconds=generate_seconds,
                                             apply_seconds=apply_seconds)
        self.sample_rootfs = l4t_bundle.make_sample_rootfs_tarball(os.path.join(self.root, self.SAMPLE_ROOTFS))
        self.loaders = None

    def start_loaders(self, admin_api_url):
        """Serve each port's Loader from what was flashed to that port (booted on flash)."""
        from lab.loader import LabLoaderFleet  # pylint: disable=import-outside-toplevel

        self.loaders = LabLoaderFleet(os.path.join(self.lab_state, 'storage'), admin_api_url)
        for port in self.ports:
            self.loaders.boot(port)
        return self.loaders

    def stop_loaders(self):
        if self.loaders:
            self.loaders.stop_all()

    def power_cycle(self, port):
        """The operator's power cycle into recovery mode: the device on ``port`` drops whatever it
        was running (the flashing initrd, its new system) and waits in recovery mode again."""
        from lab import l4t_host  # pylint: disable=import-outside-toplevel

        l4t_host.power_cycle_into_recovery(self.lab_state, self.host_root, self.sysfs, port, self.ports.get(port))

    def group_vars(self):
        """The station's inventory variables for this lab."""
        return {
            'jetson_station': 'localhost',
            'jetson_workdir': self.workdir,
            'jetson_l4t_dir': self.bundle,
            'jetson_usb_sysfs_root': self.sysfs,
            'jetson_station_root': self.host_root,
            'jetson_report_dir': self.report_dir,  # the controller's copy of the batch report
            'flash_image_space_mb': 1,  # the lab's images are a few kilobytes
            'rootfs_sample_tarball': self.sample_rootfs,
            'rootfs_default_user': SERVICE_USER,
            'identity_conf_owner': SERVICE_USER,
            'identity_conf_group': SERVICE_USER,
            'identity_api_retry_backoff': 0.2,
            'verify_health_timeout': 60,
            'verify_health_interval': 0.3,
        }

    def host_vars(self, port):
        host = {'jetson_usb_instance': port}
        if self.loaders:
            host['jetson_loader_url'] = self.loaders.url(port)
        return host

    def storage(self, port):
        return os.path.join(self.lab_state, 'storage', port)
