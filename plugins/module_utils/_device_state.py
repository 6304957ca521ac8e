# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The per-device state file on the station: each phase's status, times and error."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic

# A serial names the device's directory, logs and records on the station: the one serial rule
# of every module and of the batch check.
SERIAL_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')


# The provisioning phases a state file records, in the order a run does them.
PHASES = ('rootfs', 'fuse', 'identity', 'flash', 'verify')


# The statuses of a phase that leave nothing to do for the device.
FINISHED = ('done', 'skipped')


def phase_status(phase, record, fuse_enabled):
    """The one rule for a phase's status on a device: as its state file records it (``record``,
    {} when the phase never ran: done, failed, running or skipped), else pending. Fusing is
    optional: the fuse phase of a device not to be fused (``fuse_enabled`` false) that never
    ran is skipped, and one skipped while the device was not to be fused is pending once it is."""
    status = (record.get('status') if isinstance(record, dict) else None) or 'pending'
    if phase == 'fuse' and status in ('pending', 'skipped'):
        return 'pending' if fuse_enabled else 'skipped'
    return status


class DeviceStateError(ValueError):
    """The state file exists but cannot be read as this collection writes it."""


class DeviceState(object):
    """The state of one device on the station, a JSON file::

        {"serial": "AZJN-0042",
         "phases": {"flash": {"status": "done", "started": 1.7e9, "finished": 1.7e9,
                              "seconds": 312.5, "error": null, ...}}}

    ``status`` is one of done, failed, running, skipped. Only the device's own tasks write its
    file, so no locking is needed; every write replaces the file atomically (mode 0640). It
    never holds a secret.
    """

    STATUSES = ('done', 'failed', 'running', 'skipped')

    def __init__(self, path, serial=None):
        self.path = path
        self.serial = serial

    def load(self):
        """The whole state as a dict; {} when the file does not exist yet."""
        try:
            with open(self.path, 'rb') as state_file:
                raw = state_file.read()
        except FileNotFoundError:
            return {}
        except (IOError, OSError) as exc:
            raise DeviceStateError('cannot read the device state %s: %s' % (self.path, exc.strerror or exc))
        try:
            data = json.loads(raw.decode('utf-8'))
        except ValueError:
            raise DeviceStateError('the device state %s is not JSON; move it aside (the device\'s phases'
                                   ' will then run again)' % self.path)
        if not isinstance(data, dict) or not isinstance(data.get('phases', {}), dict):
            raise DeviceStateError('the device state %s is not a state file of this collection; move it aside'
                                   % self.path)
        return data

    def phase(self, name):
        """The record of phase ``name`` (a copy), or {} when it never ran."""
        phase = self.load().get('phases', {}).get(name)
        return dict(phase) if isinstance(phase, dict) else {}

    def record(self, name, **fields):
        """Merge ``fields`` into phase ``name``, write the file atomically, return the phase."""
        status = fields.get('status')
        if status is not None and status not in self.STATUSES:
            raise ValueError('status must be one of %s, not %r' % (', '.join(self.STATUSES), status))
        data = self.load()
        if self.serial is not None:
            data['serial'] = self.serial
        else:
            data.setdefault('serial', None)
        phases = data.setdefault('phases', {})
        phase = phases.get(name)
        if not isinstance(phase, dict):
            phase = {}
        phase.update(fields)
        phases[name] = phase
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        payload = json.dumps(data, indent=2, sort_keys=True) + '\n'
        write_file_atomic(self.path, payload.encode('utf-8'), mode=0o640)
        return dict(phase)
