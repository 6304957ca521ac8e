# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The host-wide state of a station that NVIDIA's initrd flasher shares between all its runs.

Separate ``Linux_for_Tegra`` trees do not make concurrent initrd flashes independent
(docs/l4t-parallel-flash.md, read from the r36.2 scripts ``l4t_initrd_flash.sh``,
``l4t_initrd_flash_internal.sh`` and ``l4t_network_flash.func``):

* every internal run restarts the NFS server, which drops the runtime exports of every other
  flash in flight; entries in ``/etc/exports.d`` survive that, and a ``service`` program in the
  tree's ``tools/kernel_flash/bin`` (first on the internal script's ``PATH``) replaces the
  restart;
* NVIDIA's outer script installs and removes two udev rules under fixed names; the station gets
  copies under names of its own, installed once;
* the host reaches the device's flashing initrd through the USB gadget interface whose
  configuration is ``RNDIS+L4T<instance>``: the first one found for an instance wins, so a
  stale interface of that instance would take another device's flash.

Every host path is taken under ``root`` (the inventory's ``jetson_station_root``, ``/`` on a
real station; the lab points it at a fake host root holding fake ``exportfs``, ``service`` and
``udevadm``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex
import subprocess
import threading
import time

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic

# NVIDIA's own export of a tree (PERMISSION_STR and the default client of enable_nfs_for_folder
# in l4t_network_flash.func); in an exports file the IPv6 client is written without brackets.
NFS_CLIENT = 'fc00:1:1::/48'
NFS_OPTIONS = 'rw,nohide,insecure,no_subtree_check,async,no_root_squash'
# What the device mounts from its tree while it is flashed.
EXPORTED_TREE_PATHS = ('rootfs', 'tools/kernel_flash')
# NVIDIA's rules, shipped in every tree; installed as <number>-azaion-jetson-<rest>.
UDEV_RULES_DIR = 'tools/kernel_flash/host_udev'
UDEV_RULES = ('99-l4t-host.rules', '10-l4t-usb-msd.rules')
SERVICE_SHIM = 'tools/kernel_flash/bin/service'
# NVIDIA's internal initrd flash script: what image generation and each flash run.
INTERNAL_SCRIPT = 'tools/kernel_flash/l4t_initrd_flash_internal.sh'
HOST_COMMAND_TIMEOUT = 120
# How long a running NFS server is taken as running without asking again (see ensure_nfs_server).
NFS_CHECK_SECONDS = 10
_NFS_CHECKED = {}
_NFS_CHECKS_LOCK = threading.Lock()

EXPORTFS = 'usr/sbin/exportfs'
SERVICE = 'usr/sbin/service'
UDEVADM = 'usr/bin/udevadm'
IP = 'usr/sbin/ip'
DISABLE_IPV6 = 'proc/sys/net/ipv6/conf/all/disable_ipv6'
NET_CLASS = 'sys/class/net'


class StationHostError(Exception):
    """A host command failed or a host file cannot be written; the message says which and why."""


def installed_rule_name(name):
    """``99-l4t-host.rules`` -> ``99-azaion-jetson-l4t-host.rules`` (same place in udev's order)."""
    number, _dash, rest = name.partition('-')
    return '%s-azaion-jetson-%s' % (number, rest)


def gadget_instance_pattern(instance):
    """What NVIDIA's ``wait_for_booting`` takes for the device of ``instance``: the first
    interface whose configuration starts with ``RNDIS+L4T<instance>`` (a prefix: instance 1 also
    takes an ``L4T10`` interface). Every interface it matches is one a run could talk to."""
    return re.compile(r'^RNDIS\+L4T%d' % int(instance))


class StationHost(object):
    """The station's host-wide files and commands, under ``root``."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root or '/')

    def path(self, relpath):
        return os.path.join(self.root, relpath)

    # -- commands -------------------------------------------------------------------------------

    def run(self, relpath, *args):
        """Run the host program ``<root>/<relpath>``; return its output, raise on failure."""
        argv = [self.path(relpath)] + list(args)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=HOST_COMMAND_TIMEOUT, check=False)
        except (IOError, OSError) as exc:
            raise StationHostError('cannot run %s: %s' % (' '.join(argv), exc.strerror or exc))
        except subprocess.TimeoutExpired:
            raise StationHostError('%s did not finish in %d s' % (' '.join(argv), HOST_COMMAND_TIMEOUT))
        output = done.stdout.decode('utf-8', 'replace').strip()
        if done.returncode != 0:
            raise StationHostError('%s failed (exit %d): %s' % (' '.join(argv), done.returncode, output or 'no output'))
        return output

    def ensure_nfs_server(self):
        """Start the station's NFS server when it is not running (it is never restarted). The
        flashes of one run that start together ask once: a server seen running a moment ago is
        taken as running (NFS_CHECK_SECONDS)."""
        with _NFS_CHECKS_LOCK:
            if time.monotonic() - _NFS_CHECKED.get(self.root, -NFS_CHECK_SECONDS) < NFS_CHECK_SECONDS:
                return
            try:
                self.run(SERVICE, 'nfs-kernel-server', 'status')
            except StationHostError:
                self.run(SERVICE, 'nfs-kernel-server', 'start')
            _NFS_CHECKED[self.root] = time.monotonic()

    # -- NFS exports ----------------------------------------------------------------------------

    def exports_file(self, slot):
        return self.path('etc/exports.d/azaion-jetson-slot-%d.exports' % int(slot))

    def export_tree(self, slot, tree):
        """Export what the device of flash slot ``slot`` mounts from ``tree``, persistently.

        A file of ``/etc/exports.d`` survives the NFS restarts of NVIDIA's scripts and the exit
        trap of their outer script, which only edits ``/etc/exports``. Real paths: the server
        matches the device's mount request against resolved paths.
        """
        lines = ['# Written by azaion.jetson for the flash in slot %d; removed when it ends.' % int(slot)]
        for relpath in EXPORTED_TREE_PATHS:
            directory = os.path.realpath(os.path.join(tree, relpath))
            if re.search(r'\s', directory):
                raise StationHostError('cannot export %s over NFS: the path holds white space' % directory)
            lines.append('%s %s(%s)' % (directory, NFS_CLIENT, NFS_OPTIONS))
        path = self.exports_file(slot)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_file_atomic(path, ('\n'.join(lines) + '\n').encode('utf-8'), mode=0o644)
        except (IOError, OSError) as exc:
            raise StationHostError('cannot write %s: %s' % (path, exc.strerror or exc))
        self.run(EXPORTFS, '-ra')

    def unexport(self, slot):
        """Remove the exports of flash slot ``slot`` (if any) and bring the server in line."""
        try:
            os.unlink(self.exports_file(slot))
        except FileNotFoundError:
            return False
        except (IOError, OSError) as exc:
            raise StationHostError('cannot remove %s: %s' % (self.exports_file(slot), exc.strerror or exc))
        self.run(EXPORTFS, '-ra')
        return True

    # -- udev rules -----------------------------------------------------------------------------

    def install_udev_rules(self, tree):
        """Install the tree's NVIDIA host rules under the collection's names; return the names
        written (none when they were already there). They stay: they only keep NetworkManager
        and udisks away from Jetsons in the flashing initrd."""
        written = []
        for name in UDEV_RULES:
            source = os.path.join(tree, UDEV_RULES_DIR, name)
            try:
                with open(source, 'rb') as rules:
                    content = rules.read()
            except (IOError, OSError) as exc:
                raise StationHostError('cannot read NVIDIA\'s udev rules %s: %s' % (source, exc.strerror or exc))
            target = self.path(os.path.join('etc/udev/rules.d', installed_rule_name(name)))
            try:
                with open(target, 'rb') as installed:
                    if installed.read() == content:
                        continue
            except (IOError, OSError):
                pass
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                write_file_atomic(target, content, mode=0o644)
            except (IOError, OSError) as exc:
                raise StationHostError('cannot write %s: %s' % (target, exc.strerror or exc))
            written.append(os.path.basename(target))
        if written:
            self.run(UDEVADM, 'control', '--reload-rules')
        return written

    # -- USB gadget interfaces ------------------------------------------------------------------

    def gadget_interfaces(self):
        """The network interfaces of Jetsons in NVIDIA's flashing initrd, in the order the
        tools scan them: dicts with name, configuration and port (the USB port the interface
        sits on, read from its ``device`` link, which ends in ``<port>:<config>.<interface>``)."""
        net = self.path(NET_CLASS)
        try:
            names = sorted(os.listdir(net))
        except (IOError, OSError):
            return []
        found = []
        for name in names:
            try:
                with open(os.path.join(net, name, 'configuration')) as configuration_file:
                    configuration = configuration_file.read().strip()
            except (IOError, OSError):
                continue
            if not configuration.startswith('RNDIS+L4T'):
                continue
            device = os.path.basename(os.path.realpath(os.path.join(net, name, 'device')))
            found.append({'name': name, 'configuration': configuration, 'port': device.rsplit(':', 1)[0] or None})
        return found

    def interfaces_of_instance(self, instance):
        pattern = gadget_instance_pattern(instance)
        return [interface for interface in self.gadget_interfaces() if pattern.match(interface['configuration'])]

    def remove_gadget_addresses(self, instance):
        """Take the host address of ``instance`` (``fc00:1:1:<instance>::1/64``, which NVIDIA's
        run adds to the interface it talks to and never removes) off every gadget interface of
        that instance; return the interfaces that had it. Left on the interface of a device stuck
        in the flashing initrd, it would route that instance's next flash to the stuck device."""
        address = 'fc00:1:1:%d::1/64' % int(instance)
        removed = []
        for interface in self.interfaces_of_instance(instance):
            try:
                self.run(IP, '-6', 'addr', 'del', address, 'dev', interface['name'])
            except StationHostError:
                continue  # the interface does not have it (or is gone already)
            removed.append(interface['name'])
        return removed

    # -- the service shim -----------------------------------------------------------------------

    def write_service_shim(self, tree):
        """Put ``tools/kernel_flash/bin/service`` in the tree: the internal script's NFS restart
        becomes a no-op, every other call goes to the station's own ``service``."""
        script = '\n'.join([
            '#!/bin/sh',
            '# Written by azaion.jetson. NVIDIA\'s l4t_initrd_flash_internal.sh puts this directory first on',
            '# PATH and runs "service nfs-kernel-server restart" on every run, which would drop the NFS',
            '# exports of every other flash in flight on this station. The station keeps its NFS server',
            '# running and its exports in /etc/exports.d; every other call goes to the real service.',
            'if [ "$1" = nfs-kernel-server ] && [ "$2" = restart ]; then',
            '    exit 0',
            'fi',
            'exec %s "$@"' % shlex.quote(self.path(SERVICE)),
            '',
        ])
        path = os.path.join(tree, SERVICE_SHIM)
        try:
            with open(path, 'rb') as written:
                if written.read() == script.encode('utf-8') and os.access(path, os.X_OK):
                    return path  # a tree flashed from again (a flash slot's) has it already
        except (IOError, OSError):
            pass
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_file_atomic(path, script.encode('utf-8'), mode=0o755)
        except (IOError, OSError) as exc:
            raise StationHostError('cannot write %s: %s' % (path, exc.strerror or exc))
        return path

    # -- pre-flight -----------------------------------------------------------------------------

    def preflight_problems(self, workdir, needed_bytes, images):
        """What the station lacks for NVIDIA's initrd flash, with ``needed_bytes`` more free under
        ``workdir`` for ``images`` (what they are, for the message): a list of messages, each with
        the fix."""
        problems = []
        for relpath, package in ((EXPORTFS, 'nfs-kernel-server'), (SERVICE, 'init-system-helpers'),
                                 (UDEVADM, 'udev'), (IP, 'iproute2')):
            if not os.access(self.path(relpath), os.X_OK):
                problems.append('%s is missing: install %s (apt-get install %s); NVIDIA\'s initrd flasher needs it'
                                % (self.path(relpath), package, package))
        try:
            with open(self.path(DISABLE_IPV6)) as flag:
                ipv6_off = flag.read().strip() == '1'
        except (IOError, OSError):
            ipv6_off = True
        if ipv6_off:
            problems.append('IPv6 is off on the station (%s is 1 or missing): the flashing initrd is reached at'
                            ' fc00:1:1:<instance>::2; turn it on with sysctl -w net.ipv6.conf.all.disable_ipv6=0'
                            % self.path(DISABLE_IPV6))
        existing = os.path.abspath(workdir)
        while not os.path.isdir(existing) and existing != os.path.dirname(existing):
            existing = os.path.dirname(existing)
        stats = os.statvfs(existing)
        free = stats.f_bavail * stats.f_frsize
        if free < needed_bytes:
            problems.append('only %.1f GiB are free under %s, and %s need about %.1f GiB more: free disk space, or lower'
                            ' jetson_flash_concurrency' % (free / 2.0 ** 30, existing, images, needed_bytes / 2.0 ** 30))
        return problems
