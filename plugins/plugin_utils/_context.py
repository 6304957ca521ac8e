# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The device context: everything the phases need to know about one device, worked out once on
the controller from its inventory variables (and its station's), and the outcome of a device
from the results of its station's runs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import (
    DEFAULT_EMAIL_DOMAIN,
    DEFAULT_EMAIL_PREFIX,
    IdentityError,
    batch_problems,
    device_email,
)
from ansible_collections.azaion.jetson.plugins.plugin_utils._station import station_paths

# Settings that belong to a station (design.md): set on the station's host or on its devices,
# the same for every device of one station. Inventory name -> (context name, default).
STATION_SETTINGS = (
    ('jetson_l4t_dir', 'l4t_dir', ''),
    ('jetson_workdir', 'workdir', '/var/lib/azaion-jetson'),
    ('jetson_usb_sysfs_root', 'usb_sysfs_root', '/sys/bus/usb/devices'),
    ('jetson_flash_concurrency', 'flash_concurrency', 4),
    ('jetson_station_root', 'station_root', '/'),
)
DEFAULT_STATION = 'localhost'
API_URL_ENV = 'AZAION_ADMIN_API_URL'


def _get(variables, name, default=None):
    """A variable, or ``default`` when it is not set (or set to nothing)."""
    if variables is None:
        return default
    try:
        value = variables[name]
    except KeyError:
        return default
    return default if value is None else value


def _is_set(variables, name):
    return _get(variables, name) is not None


def _flag(name, variables, variable, problems):
    """A true/false variable. Anything else is a problem: "treu" must not quietly mean false
    where it decides an irreversible step."""
    value = _get(variables, variable, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', 'yes', 'on', '1'):
        return True
    if text in ('false', 'no', 'off', '0', ''):
        return False
    problems.append('%s: %s is %r, which is neither true nor false; set it to true or false' % (name, variable, value))
    return False


def station_of(device_vars):
    return str(_get(device_vars, 'jetson_station', '') or DEFAULT_STATION)


def station_settings(name, device_vars, station_vars, station):
    """The station settings of one device, and the contradictions between its own and its
    station's (a device that sets none takes its station's)."""
    settings, problems = {}, []
    for variable, key, default in STATION_SETTINGS:
        own, stations = _get(device_vars, variable), _get(station_vars, variable)
        if own is not None and stations is not None and str(own) != str(stations):
            problems.append('%s: %s is %s on the device but %s on its station %s; set it either on the station\'s '
                            'host or on its devices, not differently on both' % (name, variable, own, stations, station))
        value = own if own is not None else stations if stations is not None else default
        settings[key] = value
    return settings, problems


def device_context(name, device_vars, station_vars=None, email_prefix=DEFAULT_EMAIL_PREFIX,
                   email_domain=DEFAULT_EMAIL_DOMAIN, api_url=''):
    """The context of inventory host ``name``: see DEVICE_OPTIONS in module_utils/_station_run.py.

    ``problems`` lists what stops the batch (each names the device, the variable and the fix);
    a context with problems is never given to a station module.
    """
    station = station_of(device_vars)
    settings, problems = station_settings(name, device_vars, station_vars, station)
    serial = str(_get(device_vars, 'jetson_serial', '') or name)
    usb_instance = str(_get(device_vars, 'jetson_usb_instance', '') or '')
    own_rootfs = str(_get(device_vars, 'jetson_rootfs_dir', '') or '')
    try:
        email = device_email(serial, email_prefix, email_domain)
    except IdentityError as exc:
        email = ''
        problems.append('%s: %s' % (name, exc))
    paths = {}
    try:
        paths = station_paths(str(settings['workdir']), serial, usb_instance or None, own_rootfs or None)
    except ValueError as exc:
        problems.append('%s: %s' % (name, exc))
    settings.update((key, paths.get(key)) for key in ('staging_tree', 'logs', 'flash_slots', 'reports'))
    return dict(
        name=name,
        serial=serial,
        email=email,
        station=station,
        usb_instance=usb_instance,
        board=str(_get(device_vars, 'jetson_board', '') or ''),
        board_identity=dict(_get(device_vars, 'flash_board_identity', {}) or {}),
        own_rootfs=own_rootfs,
        rootfs=paths.get('rootfs') or '',
        device_conf=paths.get('device_conf') or '',
        port_tree=paths.get('port_tree') or '',
        state_file=paths.get('state_file') or '',
        sync_record=paths.get('sync_record') or '',
        loader_url=str(_get(device_vars, 'jetson_loader_url', '') or ''),
        api_url=str(_get(device_vars, 'azaion_admin_api_url', '') or api_url or ''),
        fuse_enabled=_flag(name, device_vars, 'jetson_fuse_enabled', problems),
        fuse_config=str(_get(device_vars, 'jetson_fuse_config', '') or ''),
        pkc_key=str(_get(device_vars, 'jetson_pkc_key', '') or ''),
        sbk_key=str(_get(device_vars, 'jetson_sbk_key', '') or ''),
        settings=settings,
        problems=problems,
    )


def device_contexts(hosts, hostvars, email_prefix=None, email_domain=None, api_url=None):
    """The contexts of inventory ``hosts``, in their order.

    ``email_prefix`` and ``email_domain``: by default each device's ``identity_email_prefix``
    and ``identity_email_domain``, else the collection's defaults. ``api_url``: the admin API
    URL of a device that sets no ``azaion_admin_api_url``; by default the controller's
    AZAION_ADMIN_API_URL (this runs on the controller, where AWX injects its credentials).
    """
    if api_url is None:
        api_url = os.environ.get(API_URL_ENV, '')
    contexts = []
    for name in hosts:
        device_vars = hostvars[name]
        station = station_of(device_vars)
        contexts.append(device_context(
            name, device_vars, _station_vars(hostvars, station),
            email_prefix or _get(device_vars, 'identity_email_prefix', DEFAULT_EMAIL_PREFIX),
            email_domain or _get(device_vars, 'identity_email_domain', DEFAULT_EMAIL_DOMAIN), api_url))
    return contexts


def station_work(contexts, host):
    """The contexts of ``host``'s station when ``host`` runs that station's work (it is the
    station's first device), else an empty list: so that the work runs once per station."""
    station = None
    for context in contexts:
        if context['name'] == host:
            station = context['station']
            break
    devices = [context for context in contexts if context['station'] == station]
    return devices if devices and devices[0]['name'] == host else []


def _station_vars(hostvars, station):
    if station not in hostvars:
        return None  # a station that is not in the inventory has no variables of its own
    return hostvars[station]


def station_problems(contexts):
    """Devices of one station that disagree on a station setting: a station runs each phase
    once for all of its devices, with one value of each."""
    problems = []
    by_station = {}
    for context in contexts:
        by_station.setdefault(context['station'], []).append(context)
    for station, devices in sorted(by_station.items()):
        for _variable, key, _default in STATION_SETTINGS + (('azaion_admin_api_url', 'api_url', ''),):
            values = {}
            for device in devices:
                value = device['settings'][key] if key in device['settings'] else device.get(key, '')
                values.setdefault(str(value), []).append(device['name'])
            if len(values) > 1:
                problems.append('the devices of station %s disagree on %s (%s): a station does each phase once for '
                                'all of its devices; set it once, on the station\'s host or in a group of its devices'
                                % (station, _variable, '; '.join('%s for %s' % (value, ', '.join(names))
                                                                 for value, names in sorted(values.items()))))
    return problems


def batch_check(contexts, email_prefix=DEFAULT_EMAIL_PREFIX, email_domain=DEFAULT_EMAIL_DOMAIN):
    """Everything that must stop the batch before it writes anything: each device's own
    problems, devices that would collide, and stations whose devices disagree on a setting."""
    problems = []
    for problem in ([problem for context in contexts for problem in context.get('problems', [])]
                    + batch_problems(contexts, email_prefix, email_domain)
                    + station_problems([context for context in contexts if 'settings' in context])):
        if problem not in problems:
            problems.append(problem)
    return problems


def station_leaders(contexts, host=None):
    """Station -> the inventory host that runs the station's work: its first device. With
    ``host``: the one that runs the work of ``host``'s station."""
    leaders = {}
    for context in contexts:
        leaders.setdefault(context['station'], context['name'])
    if host is None:
        return leaders
    for context in contexts:
        if context['name'] == host:
            return leaders[context['station']]
    return None


def device_outcome(phase_results, name, finished=False, station_error=None):
    """The outcome of device ``name`` from its station's phase results (phase name -> the
    registered result of that phase's station run, in phase order): failed at the first phase
    that failed it, changed if any phase changed it."""
    if finished:
        # Finished before this run: no phase ran for it, whatever happened to the others.
        return dict(failed=False, changed=False, msg='%s: already finished: nothing to do' % name)
    if station_error:
        return dict(failed=True, changed=False, msg='%s: its station failed: %s' % (name, station_error))
    changed, done = False, []
    for phase, result in phase_results.items():
        if not result:
            # Not even a skipped result: the station's run stopped before this phase.
            return dict(failed=True, changed=changed,
                        msg='%s: its station\'s %s run did not happen: see the station\'s errors above' % (name, phase))
        device = (result.get('devices') or {}).get(name)
        if device is None:
            continue
        if device.get('failed'):
            return dict(failed=True, changed=bool(device.get('changed')),
                        msg='%s: %s failed: %s' % (name, phase, device.get('msg', 'see above')))
        changed = changed or bool(device.get('changed'))
        done.append('%s %s' % (phase, 'changed' if device.get('changed') else 'ok'))
    return dict(failed=False, changed=changed, msg='%s: %s' % (name, ', '.join(done) or 'no phase ran for it'))


def device_outcomes(phase_results, names, finished=(), station_error=None):
    """The outcome of each device of ``names`` (name -> outcome, see :func:`device_outcome`);
    ``finished``: the names of the devices finished before this run."""
    return dict((name, device_outcome(phase_results, name, name in finished, station_error)) for name in names)
