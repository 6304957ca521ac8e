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
import posixpath

from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import (
    DEFAULT_EMAIL_DOMAIN,
    DEFAULT_EMAIL_PREFIX,
    IdentityError,
    batch_problems,
    device_email,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_checks import STATION_TREES, inside
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import PHASES
from ansible_collections.azaion.jetson.plugins.plugin_utils import _inputs as inputs
from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import ControllerSecretError, controller_secret
from ansible_collections.azaion.jetson.plugins.plugin_utils._station import station_paths

# Settings that belong to a station (docs/provisioning-flow.md, Station settings): set on the
# station's host or on its devices, the same for every device of one station.
# Inventory name -> (context name, default).
STATION_SETTINGS = (
    ('jetson_l4t_dir', 'l4t_dir', ''),
    ('jetson_workdir', 'workdir', '/var/lib/azaion-jetson'),
    ('jetson_usb_sysfs_root', 'usb_sysfs_root', '/sys/bus/usb/devices'),
    ('jetson_flash_concurrency', 'flash_concurrency', 4),
    ('jetson_station_root', 'station_root', '/'),
)
DEFAULT_STATION = 'localhost'
API_URL_ENV = 'AZAION_ADMIN_API_URL'
API_TOKEN_ENV = 'AZAION_ADMIN_API_TOKEN'
# What each phase needs of a device (besides what every phase needs).
BUNDLE_PHASES = ('rootfs', 'fuse', 'flash')


def station_of(device_vars):
    return str(inputs.get(device_vars, 'jetson_station', '') or DEFAULT_STATION)


def _setting(who, variable, key, value, problems):
    """One station setting, checked by its own rule."""
    if key == 'flash_concurrency':
        return inputs.concurrency(who, value, variable, problems)
    what = {'l4t_dir': "the L4T bundle's Linux_for_Tegra", 'workdir': 'the directory where the station keeps its'
            ' trees, records and reports', 'usb_sysfs_root': 'the USB devices in sysfs (/sys/bus/usb/devices)',
            'station_root': 'the root of the station\'s file system (/)'}[key]
    path = inputs.absolute_path(who, value, variable, problems, what)
    if key == 'workdir' and path == '/':
        problems.append('%s: %s is /; set it to a directory of its own, such as /var/lib/azaion-jetson' % (who, variable))
    return path


def station_settings(name, device_vars, station_vars, station):
    """The station settings of one device, and what is wrong with them: a device value that
    contradicts its station's, and a value its rule refuses (named by where it was set)."""
    settings, problems = {}, []
    for variable, key, default in STATION_SETTINGS:
        own, stations = inputs.get(device_vars, variable), inputs.get(station_vars, variable)
        if own is not None and stations is not None and str(own) != str(stations):
            problems.append('%s: %s is %s on the device but %s on its station %s; set it either on the station\'s '
                            'host or on its devices, not differently on both' % (name, variable, own, stations, station))
        if own is not None:
            value = _setting(name, variable, key, own, problems)
        elif stations is not None:
            value = _setting('station %s' % station, variable, key, stations, problems)
        else:
            value = default
        settings[key] = default if value in (None, '') and key != 'l4t_dir' else value
    if inside(settings['workdir'], settings['l4t_dir']):
        problems.append('%s: jetson_workdir %s is inside the bundle jetson_l4t_dir %s, which is never to be written;'
                        ' set jetson_workdir outside it' % (name, settings['workdir'], settings['l4t_dir']))
    return settings, problems


def device_context(name, device_vars, station_vars=None, email_prefix=DEFAULT_EMAIL_PREFIX,
                   email_domain=DEFAULT_EMAIL_DOMAIN, api_url='', phases=None, report_dir=''):
    """The context of inventory host ``name``: see DEVICE_OPTIONS in module_utils/_station_run.py.

    ``problems`` lists what stops the batch (each names the device, the variable and the fix):
    every variable checked by its rule (plugin_utils/_inputs.py) and, with ``phases`` (the
    phases of this run), what those phases need. A context with problems is never given to a
    station module. ``report_dir``: the batch report's directory when ``jetson_report_dir`` is
    not set.
    """
    station = station_of(device_vars)
    settings, problems = station_settings(name, device_vars, station_vars, station)
    serial = inputs.serial(name, inputs.get(device_vars, 'jetson_serial', name), 'jetson_serial (or the host name)',
                           problems)
    usb_instance = inputs.usb_port(name, inputs.get(device_vars, 'jetson_usb_instance'), 'jetson_usb_instance',
                                   problems)
    own_rootfs = inputs.absolute_path(name, inputs.get(device_vars, 'jetson_rootfs_dir'), 'jetson_rootfs_dir',
                                      problems, "the device's staging rootfs")
    if own_rootfs == '/':
        problems.append("%s: jetson_rootfs_dir is /, the station's own root; set it to the device's staging rootfs"
                        ' (or leave it unset for the port tree\'s)' % name)
    elif inside(own_rootfs, settings['l4t_dir']):
        problems.append('%s: jetson_rootfs_dir %s is inside the bundle jetson_l4t_dir %s, which is never to be'
                        ' written; set it to a rootfs outside the bundle (or leave it unset)'
                        % (name, own_rootfs, settings['l4t_dir']))
    elif any(inside(own_rootfs, posixpath.join(settings['workdir'], tree)) for tree in STATION_TREES):
        problems.append("%s: jetson_rootfs_dir %s is inside the station's own trees (%s under jetson_workdir), which the"
                        ' run makes and remakes; set it to a rootfs outside them (or leave it unset for the port'
                        " tree's)" % (name, own_rootfs, ' and '.join(STATION_TREES)))
    email = ''
    if serial:
        try:
            email = device_email(serial, email_prefix, email_domain)
        except IdentityError as exc:
            # Which variable: the serial's, or the e-mail prefix's or domain's (named in the message).
            about = 'jetson_serial (or the host name): ' if str(exc).startswith('device serial') else ''
            problems.append('%s: %s%s' % (name, about, exc))
    paths = {}
    if serial and settings['workdir'] and settings['workdir'] != '/':
        paths = station_paths(settings['workdir'], serial, usb_instance or None, own_rootfs or None)
    settings.update((key, paths.get(key)) for key in ('staging_tree', 'logs', 'flash_slots', 'reports', 'images'))
    fuse_enabled = inputs.flag(name, inputs.get(device_vars, 'jetson_fuse_enabled'), 'jetson_fuse_enabled', problems)
    fuse_config = inputs.absolute_path(name, inputs.get(device_vars, 'jetson_fuse_config'), 'jetson_fuse_config',
                                       problems, "the device's fuse configuration (NVIDIA genericfuse XML)")
    api_url_text = inputs.url(name, inputs.get(device_vars, 'azaion_admin_api_url') or api_url,
                              'azaion_admin_api_url' if inputs.get(device_vars, 'azaion_admin_api_url') else API_URL_ENV,
                              problems, 'the admin API')
    context = dict(
        name=name,
        serial=serial,
        email=email,
        station=station,
        usb_instance=usb_instance,
        board=inputs.board(name, inputs.get(device_vars, 'jetson_board'), 'jetson_board', problems),
        board_identity=_board_identity(name, device_vars, problems),
        own_rootfs=own_rootfs,
        rootfs=paths.get('rootfs') or '',
        device_conf=paths.get('device_conf') or '',
        port_tree=paths.get('port_tree') or '',
        state_file=paths.get('state_file') or '',
        sync_record=paths.get('sync_record') or '',
        loader_url=inputs.url(name, inputs.get(device_vars, 'jetson_loader_url'), 'jetson_loader_url', problems,
                              "the device's Loader"),
        api_url=api_url_text,
        fuse_enabled=fuse_enabled,
        fuse_config=fuse_config,
        pkc_key=inputs.absolute_path(name, inputs.get(device_vars, 'jetson_pkc_key'), 'jetson_pkc_key', problems,
                                     'the PKC key file'),
        sbk_key=inputs.absolute_path(name, inputs.get(device_vars, 'jetson_sbk_key'), 'jetson_sbk_key', problems,
                                     'the SBK key file'),
        ekb_file=inputs.absolute_path(name, inputs.get(device_vars, 'jetson_ekb_file'), 'jetson_ekb_file', problems,
                                      'the EKB image (eks_t234.img) made with the OEM keys the device is fused with'),
        batch=inputs.batch_name(name, inputs.get(device_vars, 'jetson_batch_name'), 'jetson_batch_name', problems),
        report_dir=inputs.absolute_path(name, inputs.get(device_vars, 'jetson_report_dir', report_dir), 'jetson_report_dir',
                                        problems, 'the directory on the controller where the batch report is kept'),
        settings=settings,
        problems=problems,
    )
    if phases is not None:
        problems.extend(phase_problems(context, phases, device_vars))
    return context


def _board_identity(name, device_vars, problems):
    value = inputs.get(device_vars, 'flash_board_identity', {})
    if not isinstance(value, dict):
        problems.append('%s: flash_board_identity is %s, not a mapping; set it to a mapping such as {FAB: "300"}'
                        % (name, 'a list' if isinstance(value, list) else repr(value)))
        return {}
    return dict(value)


def phase_problems(context, phases, device_vars):
    """What the run's ``phases`` need of a device that it lacks (a value that is set but bad
    is a problem already)."""
    name, problems = context['name'], []
    found = ' '.join(context['problems'])

    def missing(variable, value):
        return not value and variable not in found

    if set(phases) & set(BUNDLE_PHASES):
        if missing('jetson_usb_instance', context['usb_instance']):
            problems.append('%s: jetson_usb_instance is not set; set it to the USB port of its cable' % name)
        if missing('jetson_l4t_dir', context['settings']['l4t_dir']):
            problems.append("%s: jetson_l4t_dir is not set; set it to the bundle's Linux_for_Tegra on its station" % name)
    if 'fuse' in phases and context['fuse_enabled'] and missing('jetson_fuse_config', context['fuse_config']):
        problems.append('%s: jetson_fuse_enabled is true but jetson_fuse_config is not set; set jetson_fuse_config to'
                        ' the fuse XML on the station, or set jetson_fuse_enabled to false' % name)
    if 'identity' in phases:
        if missing('azaion_admin_api_url', context['api_url']) and API_URL_ENV not in found:
            problems.append('%s: the admin API URL is not set; set azaion_admin_api_url in the inventory or export %s'
                            % (name, API_URL_ENV))
        try:
            token, token_source = controller_secret(device_vars, 'azaion_admin_api_token', API_TOKEN_ENV)
        except ControllerSecretError as exc:
            problems.append('%s: %s' % (name, exc))
        else:
            inputs.token(token, token_source, problems)
    if 'verify' in phases and missing('jetson_loader_url', context['loader_url']):
        problems.append("%s: jetson_loader_url is not set; set it to the device's Loader URL (as the station reaches"
                        ' it after first boot)' % name)
    return problems


def device_contexts(hosts, hostvars, email_prefix=None, email_domain=None, api_url=None, phases=None, report_dir=''):
    """The contexts of inventory ``hosts``, in their order.

    ``email_prefix`` and ``email_domain``: by default each device's ``identity_email_prefix``
    and ``identity_email_domain``, else the collection's defaults. ``api_url``: the admin API
    URL of a device that sets no ``azaion_admin_api_url``; by default the controller's
    AZAION_ADMIN_API_URL (this runs on the controller, where AWX injects its credentials).
    ``phases``: the phases of this run, to check what they need (see :func:`phase_problems`).
    ``report_dir``: see :func:`device_context`; one inside an installed collection (the
    collection's playbook run by its name) becomes ``reports`` in the current directory.
    """
    if api_url is None:
        api_url = os.environ.get(API_URL_ENV, '')
    if 'ansible_collections' in report_dir.split(os.sep):
        # The collection's own playbook, run by its name: its directory is the installed
        # collection, no place for reports. The directory the run was started in is.
        report_dir = os.path.join(os.getcwd(), 'reports')
    contexts = []
    for name in hosts:
        device_vars = hostvars[name]
        station = station_of(device_vars)
        contexts.append(device_context(
            name, device_vars, _station_vars(hostvars, station),
            email_prefix or inputs.get(device_vars, 'identity_email_prefix', DEFAULT_EMAIL_PREFIX),
            email_domain or inputs.get(device_vars, 'identity_email_domain', DEFAULT_EMAIL_DOMAIN), api_url, phases,
            report_dir))
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
                    + station_problems([context for context in contexts if 'settings' in context])
                    + run_setting_problems(contexts) + device_station_problems(contexts)):
        if problem not in problems:
            problems.append(problem)
    return problems


def device_station_problems(contexts):
    """A device whose station is another device of the batch: the devices are in recovery mode,
    and a station is the machine their cables go to."""
    names = set(context['name'] for context in contexts)
    return ['%s: jetson_station %s is one of the batch\'s devices; set it to the station\'s host (the machine its'
            ' USB cable goes to)' % (context['name'], context['station'])
            for context in contexts if context['station'] in names]


def run_setting_problems(contexts):
    """One run is one batch, with one report: its devices must agree on the batch's name and on
    where the controller keeps its report."""
    problems = []
    for key, variable, unset in (('batch', 'jetson_batch_name', 'batch'), ('report_dir', 'jetson_report_dir', '')):
        values = {}
        for context in contexts:
            values.setdefault(context.get(key) or unset, []).append(context['name'])
        if len(values) > 1:
            problems.append('the devices of this run disagree on %s (%s); set it once for the whole run, in the group'
                            ' jetsons or with -e' % (variable, '; '.join('%s for %s' % (value or 'unset', ', '.join(devices))
                                                                         for value, devices in sorted(values.items()))))
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
    that failed it, changed if any phase changed it. A device whose station stopped answering
    (a result with ``station_lost``, see plugin_utils/_station_watch.py) fails with the
    result's message, and its outcome has ``station_lost`` too."""
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
        if result.get('station_lost'):
            # Its station stopped answering during this phase: the result says which and what to do.
            return dict(failed=True, changed=changed, station_lost=True, msg='%s: %s' % (name, result.get('msg')))
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


def run_phases(run_tags, skip_tags=()):
    """The phases a run does, in PHASES' order: those its tags name (all of them for the tag
    ``all``), less those its skipped tags name."""
    chosen = PHASES if 'all' in run_tags else [phase for phase in PHASES if phase in run_tags]
    return [phase for phase in chosen if phase not in skip_tags]
