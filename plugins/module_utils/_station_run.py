# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""One module run for all of a station's devices.

The station modules (``station_*``) take the station's devices as a list of device contexts
(made on the controller by the ``azaion.jetson.device_contexts`` filter, documented once in the
``azaion.jetson.devices`` doc fragment) and do one device's work per thread, at most
``parallel`` at once. A device's work is the same code a single-device module runs: it is
given a :class:`DeviceModule`, which stands in for the AnsibleModule with that device's own
parameters, so ``exit_json``/``fail_json`` end that device's work, not the run.

A device that fails does not fail the task: the station module returns one result per device
(``devices``), and each device host reports its own outcome.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time
import traceback

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import FINISHED, DeviceState, DeviceStateError
from ansible_collections.azaion.jetson.plugins.module_utils._progress import DONE, FAILED
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import end_with_the_run, stop_tools

# The device context: one per device, made once on the controller. Every station module takes
# a list of them as its ``devices`` option; each uses the keys it needs. Keep in step with
# plugins/doc_fragments/devices.py and plugins/plugin_utils/_context.py.
DEVICE_OPTIONS = dict(
    name=dict(type='str', required=True),
    serial=dict(type='str', required=True),
    email=dict(type='str', required=True),
    station=dict(type='str'),
    usb_instance=dict(type='str'),
    board=dict(type='str'),
    board_identity=dict(type='dict'),
    own_rootfs=dict(type='path'),
    rootfs=dict(type='path'),
    device_conf=dict(type='path'),
    port_tree=dict(type='path'),
    state_file=dict(type='path', required=True),
    sync_record=dict(type='path'),
    loader_url=dict(type='str'),
    api_url=dict(type='str'),
    fuse_enabled=dict(type='bool'),
    fuse_config=dict(type='path'),
    pkc_key=dict(type='path'),
    sbk_key=dict(type='path'),
    ekb_file=dict(type='path'),
    batch=dict(type='str'),
    report_dir=dict(type='path'),
    # The station's settings and the batch check's findings: the playbook's, not the modules'.
    settings=dict(type='dict'),
    problems=dict(type='list', elements='str'),
)


def station_argument_spec(**options):
    """The argument spec of a station module: ``devices`` and ``parallel``, then ``options``."""
    spec = dict(
        devices=dict(type='list', elements='dict', required=True, options=DEVICE_OPTIONS),
        parallel=dict(type='int', default=8),
    )
    spec.update(options)
    return spec


class DeviceExit(Exception):
    """A device's work ended (its exit_json or fail_json): ``result`` is what it returned."""

    def __init__(self, result):
        super(DeviceExit, self).__init__(result.get('msg', ''))
        self.result = result


class DeviceModule(object):
    """The AnsibleModule of one device in a station run.

    ``params`` are the device's own (validated against the single-device module's argument
    spec); ``exit_json`` and ``fail_json`` raise :class:`DeviceExit`; warnings are kept per
    device. Everything else (check mode, diff, ``no_log_values``, ``run_command``...) is the
    station module's. ``no_log_values`` is shared on purpose: a secret one device's work meets
    is masked in the whole result.
    """

    def __init__(self, module, params, name):
        self._module = module
        self.station_params = module.params
        self.params = params
        self.name = name
        self.check_mode = module.check_mode
        self._diff = module._diff
        self.no_log_values = module.no_log_values
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def exit_json(self, **result):
        result.setdefault('changed', False)
        raise DeviceExit(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg)
        raise DeviceExit(result)

    def __getattr__(self, attribute):
        return getattr(self._module, attribute)


def run_device_core(proxy, spec, shared, own, work, refused=''):
    """A single-device module's core, ``work(proxy)``, for one device of a station run.

    Its parameters are the station module's options named in ``shared`` and the device's
    ``own``, checked against the single-device module's ``spec``; a failure's msg is led by the
    device's name, which the single-device module's own messages do not carry. ``refused`` ends
    the message of parameters that do not pass the spec.
    """
    name = proxy.name
    values = dict((key, proxy.station_params[key]) for key in shared)
    values.update(own)
    try:
        proxy.params = device_params(spec, values)
    except DeviceParamsError as exc:
        proxy.fail_json('%s: invalid options: %s%s' % (name, exc, refused))
    try:
        work(proxy)
    except DeviceExit as done:
        msg = str(done.result.get('msg', ''))
        if done.result.get('failed') and not msg.startswith(name + ':'):
            done.result['msg'] = '%s: %s' % (name, msg)
        raise


def shared_values(module, options):
    """What a phase core gets once for all devices: the module's ``options`` and its check mode."""
    shared = dict((name, module.params[name]) for name in options)
    shared['check_mode'] = module.check_mode
    return shared


def core_result(module, name, result):
    """A phase core's result for device ``name``, as a station module returns it: ``changed``
    set, a failure's ``msg`` led by the device's name, and the secrets it met
    (``no_log_values``) taken out of it and masked in all of the module's output."""
    module.no_log_values.update(result.pop('no_log_values', ()))
    result.setdefault('changed', False)
    msg = str(result.get('msg', ''))
    if result.get('failed') and not msg.startswith(name + ':'):
        result['msg'] = '%s: %s' % (name, msg)
    return result


def exit_with_core_result(module, result):
    """End a single-device module with its phase core's result (see :func:`core_result`)."""
    module.no_log_values.update(result.pop('no_log_values', ()))
    for warning in result.pop('warnings', ()):
        module.warn(warning)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


def shared_options(spec, names):
    """The options ``names`` of a single-device module's ``spec``: a station module takes them
    once for all of its devices."""
    return dict((name, spec[name]) for name in names)


def devices_by(devices, key):
    """Value of ``key`` -> the names of the devices that have it (devices without it left out):
    who would share a port or a tree."""
    found = {}
    for device in devices:
        if device.get(key):
            found.setdefault(device[key], []).append(device['name'])
    return found


class DeviceParamsError(ValueError):
    """A device's parameters do not pass its module's argument spec."""


def device_params(argument_spec, values):
    """``values`` checked and completed (types, choices, defaults) against ``argument_spec``,
    the single-device module's own. Keys that are not in the spec, and None, are left out."""
    given = dict((key, value) for key, value in values.items() if key in argument_spec and value is not None)
    result = ArgumentSpecValidator(argument_spec).validate(given)
    if result.error_messages:
        raise DeviceParamsError('; '.join(result.error_messages))
    return result.validated_parameters


class StationRun(object):
    """Runs ``work(device_module, device)`` for each device of ``module.params['devices']``.

    ``phase``: when given, the phase is recorded in each device's state file (outside check
    mode) by :func:`record_phase`: running when it starts, then done or failed with its times
    and error. A device whose phase was done before and changed nothing now keeps its record.

    ``progress``: a ProgressFile (module_utils/_progress.py) of the run's devices, which
    ``work`` tells each step; the run records each device's end (done or failed) in it, and
    removes it when all have ended.

    ``ends_with_the_run``: the module ends, its tools with it, once the ansible-playbook run
    that started it is gone (Ctrl-C; see _tool_runner.end_with_the_run).

    ``core`` (instead of ``work``): a phase core, a plain function ``core(shared, device) ->
    result``; ``shared`` is the module's options named in ``shared_options`` and
    ``check_mode``. See :func:`core_result` for what a result may carry.
    """

    def __init__(self, module, work=None, phase=None, progress=None, ends_with_the_run=True, core=None,
                 shared_options=()):
        self.module = module
        self.work = work
        self.core = core
        self.shared = shared_values(module, shared_options)
        self.phase = phase
        self.progress = progress
        self.ends_with_the_run = ends_with_the_run
        self.devices = module.params['devices']
        self._lock = threading.Lock()

    def one(self, device):
        started = time.time()
        state = DeviceState(device['state_file'], serial=device['serial'])
        previous = {}
        if self.phase and not self.module.check_mode:
            try:
                previous = state.phase(self.phase)
                # A phase done before is rewritten only if this run changes something.
                if previous.get('status') not in FINISHED:
                    record_phase(state, self.phase, 'running', started, previous=previous)
            except (DeviceStateError, IOError, OSError) as exc:
                why = getattr(exc, 'strerror', None) or exc
                return dict(failed=True, changed=False, msg='%s: %s' % (device['name'], why))
        proxy = DeviceModule(self.module, None, device['name'])
        try:
            if self.core is not None:
                result = core_result(self.module, device['name'], self.core(self.shared, device))
            else:
                self.work(proxy, device)
                result = dict(failed=True, changed=False, msg='%s: the work ended without a result' % device['name'])
        except DeviceExit as done:
            result = done.result
        except Exception as exc:  # one device's bug must not take the other devices' results with it
            result = dict(failed=True, changed=False, msg='%s: unexpected error: %s' % (device['name'], exc),
                          exception=traceback.format_exc())
        if proxy.warnings:
            result['warnings'] = proxy.warnings
        if self.phase and not self.module.check_mode:
            status = 'failed' if result.get('failed') else 'done'
            try:
                record_phase(state, self.phase, status, started, previous=previous,
                             error=str(result.get('msg', '')).split('\n', 1)[0] if status == 'failed' else None,
                             unchanged=not result.get('changed'))
            except (DeviceStateError, IOError, OSError) as exc:
                result.update(failed=True, msg='%s; and its state file could not be written: %s'
                              % (result.get('msg', ''), getattr(exc, 'strerror', None) or exc))
        result['seconds'] = round(time.time() - started, 3)
        if self.progress is not None:
            self.progress.step(device['name'], FAILED if result.get('failed') else DONE)
        return result

    def run(self):
        """Every device's result, by device name, in the order of ``devices``."""
        parallel = max(1, min(self.module.params['parallel'], len(self.devices) or 1))
        if self.ends_with_the_run:
            end_with_the_run()
        try:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                try:
                    futures = [(device['name'], pool.submit(self.one, device)) for device in self.devices]
                    return dict((name, future.result()) for name, future in futures)
                except BaseException:
                    # Interrupted (SIGINT from the run's process group, SystemExit): the pool
                    # waits for every device's thread on its way out, and none may start a tool
                    # meanwhile, nor leave one running.
                    stop_tools()
                    raise
        finally:
            if self.progress is not None:
                self.progress.close()

    def exit(self, results, what, **extra):
        """End the module with the station's summary and every device's result (and ``extra``,
        more keys of the module's own)."""
        module = self.module
        warnings = []
        diffs = []
        for name, result in results.items():
            warnings.extend('%s: %s' % (name, warning) for warning in result.pop('warnings', []))
            diff = result.pop('diff', None)
            if diff:
                for one in diff if isinstance(diff, list) else [diff]:
                    one = dict(one)
                    for header in ('before_header', 'after_header'):
                        one[header] = '%s: %s' % (name, one.get(header) or what)
                    diffs.append(one)
        for warning in warnings:
            module.warn(warning)
        failed = sorted(name for name, result in results.items() if result.get('failed'))
        changed = sorted(name for name, result in results.items() if result.get('changed'))
        summary = '%s: %d device(s), %d changed, %d failed%s' % (
            what, len(results), len(changed), len(failed), (' (%s)' % ', '.join(failed)) if failed else '')
        if diffs and module._diff:
            extra['diff'] = diffs
        module.exit_json(changed=bool(changed), devices=results, failed_devices=failed, msg=summary, **extra)


def keeps_record(previous, status, details=None):
    """A phase that was done (or skipped) before, recorded so again with the same ``details``,
    keeps its record: its times are when the work happened, and a re-run of a finished batch
    writes nothing."""
    return (status in FINISHED and previous.get('status') == status
            and all(previous.get(key) == value for key, value in (details or {}).items()))


def phase_fields(status, started, error=None, details=None):
    """What a phase's record says: ``details``, the status, the start (None: not known), and,
    once it has ended, when, for how long, and the error of a failure."""
    fields = dict(details or {})
    if status == 'running':
        fields.update(status=status, started=started, finished=None, seconds=None, error=None)
        return fields
    now = time.time()
    fields.update(status=status, finished=now, error=error if status == 'failed' else None)
    if started is not None:
        fields.update(started=started, seconds=round(now - started, 3))
    return fields


def record_phase(state, phase, status, started, previous=None, error=None, unchanged=False, details=None):
    """The one way a phase's outcome goes into a device's state file (see :func:`keeps_record`
    for when an ``unchanged`` outcome writes nothing). Returns the phase's record."""
    previous = previous if previous is not None else state.phase(phase)
    if unchanged and keeps_record(previous, status, details):
        return previous
    return state.record(phase, **phase_fields(status, started, error, details))
