# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Device identity rules that run on the controller: serial -> e-mail, and the batch check."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

DEFAULT_EMAIL_PREFIX = 'azaion-jetson-'
DEFAULT_EMAIL_DOMAIN = 'azaion.com'

# What may stand in the e-mail's local part after the prefix: the serial's last segment,
# lowercased. Kept to characters every mail system accepts (no quoting needed).
_SUFFIX_PATTERN = re.compile(r'^[a-z0-9](?:[a-z0-9_.]*[a-z0-9])?$')
_PREFIX_PATTERN = re.compile(r'^[a-z0-9._+-]*$')
_DOMAIN_PATTERN = re.compile(r'^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$')


class IdentityError(ValueError):
    """A serial, prefix or domain that cannot make a device e-mail; the message says which."""


def device_email(serial, prefix=DEFAULT_EMAIL_PREFIX, domain=DEFAULT_EMAIL_DOMAIN):
    """Return the device's e-mail: ``AZJN-0042`` -> ``azaion-jetson-0042@azaion.com``.

    The suffix is the segment after the last hyphen of the serial, lowercased
    (docs/provisioning-flow.md, step 4).
    """
    if not isinstance(serial, str) or not serial:
        raise IdentityError('device serial %r is empty or not a string; set jetson_serial (or the host name) '
                            'to the label serial, for example AZJN-0042' % (serial,))
    if '-' not in serial:
        raise IdentityError('device serial %r has no hyphen, so it has no suffix to build the e-mail from; '
                            'use the label serial, for example AZJN-0042' % serial)
    suffix = serial.rsplit('-', 1)[1].lower()
    if not suffix:
        raise IdentityError('device serial %r ends with a hyphen: the e-mail suffix would be empty; '
                            'use the full label serial, for example AZJN-0042' % serial)
    if not _SUFFIX_PATTERN.match(suffix) or '..' in suffix:
        raise IdentityError('device serial %r: its suffix %r has characters that cannot go into an e-mail '
                            'local part (allowed: letters, digits, "_" and inner "."); check the serial'
                            % (serial, suffix))
    prefix = prefix.lower()
    domain = domain.lower()
    if not _PREFIX_PATTERN.match(prefix):
        raise IdentityError('e-mail prefix %r has characters that cannot go into an e-mail local part; '
                            'use letters, digits, ".", "_", "+" or "-"' % prefix)
    if not _DOMAIN_PATTERN.match(domain):
        raise IdentityError('e-mail domain %r is not a domain name such as azaion.com' % domain)
    return '%s%s@%s' % (prefix, suffix, domain)


def batch_problems(devices, email_prefix=DEFAULT_EMAIL_PREFIX, email_domain=DEFAULT_EMAIL_DOMAIN):
    """Return every reason why this batch must not start, as sentences naming the devices.

    ``devices`` is a list of dicts, one per inventory host: ``name`` (the host) and, where
    known, ``serial``, ``email``, ``station``, ``rootfs`` (or ``rootfs_dir``) and ``usb_instance``. The checks: a serial
    that cannot make an e-mail, two devices with one serial, two serials that map to one
    e-mail (``AZJN-0042`` and ``AZXX-0042``), two devices sharing a staging rootfs on one
    station, and two devices on one USB port of one station.
    """
    problems = []
    by_serial, by_email, by_rootfs, by_port = {}, {}, {}, {}
    for device in devices:
        name = device['name']
        serial = device.get('serial') or name
        station = device.get('station') or 'localhost'
        by_serial.setdefault(serial, []).append(name)
        email = device.get('email')  # a device context has it already
        if not email:
            try:
                email = device_email(serial, email_prefix, email_domain)
            except IdentityError as exc:
                problems.append('%s: %s' % (name, exc))
        if email:
            by_email.setdefault(email, []).append('%s (serial %s)' % (name, serial))
        rootfs_dir = device.get('rootfs') or device.get('rootfs_dir')
        if rootfs_dir:
            key = (station, os.path.normpath(rootfs_dir))
            by_rootfs.setdefault(key, []).append(name)
        if device.get('usb_instance'):
            by_port.setdefault((station, str(device['usb_instance'])), []).append(name)

    for serial, names in sorted(by_serial.items()):
        if len(names) > 1:
            problems.append('devices %s have the same serial %s: each device needs its own jetson_serial'
                            % (_names(names), serial))
    for email, names in sorted(by_email.items()):
        if len(names) > 1:
            problems.append('devices %s map to the same e-mail %s: their serials end in the same segment; '
                            'fix their jetson_serial or provision them in separate batches with another '
                            'e-mail prefix (identity_email_prefix)' % (_names(names), email))
    for (station, rootfs_dir), names in sorted(by_rootfs.items()):
        if len(names) > 1:
            problems.append('devices %s share the staging rootfs %s on %s: one device.conf would overwrite '
                            'the other; give each device its own jetson_rootfs_dir'
                            % (_names(names), rootfs_dir, station))
    for (station, port), names in sorted(by_port.items()):
        if len(names) > 1:
            problems.append('devices %s are on the same USB port %s of %s: give each device the '
                            'jetson_usb_instance of its own cable' % (_names(names), port, station))
    return problems


def _names(names):
    return ', '.join(names[:-1]) + ' and ' + names[-1]
