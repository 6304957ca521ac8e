# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""An action plugin base that hands secrets to a module without making them task arguments.

Callbacks (loggers, AWX's job events, ARA...) receive every task's templated arguments before
the module's ``no_log`` masking can apply, so a secret written as a task argument reaches
them. A module whose action plugin derives from ``ControllerSecretsAction`` takes such options
from inventory variables or from the controller's environment (as AWX credentials inject
them) instead, and the task's arguments never hold them. Reading them on the controller also
lets a remote station work with credentials that exist only on the controller.

Each source has a file form, so that a secret need not sit in the job's environment (AWX
writes a credential's secrets to files and injects their paths; ansible-runner writes the
whole environment into its artifacts): ``<variable>_file`` and ``<ENVIRONMENT_VARIABLE>_FILE``
name a file on the controller that holds the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from urllib.parse import urlsplit

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import display_url
from ansible_collections.azaion.jetson.plugins.plugin_utils._station_watch import LOCAL_CONNECTIONS, execute_on_station

display = Display()


# The TLS files of the admin API that may live on the controller: module option -> (inventory
# variable, controller environment variable); each also has its _file / _FILE form.
TLS_CONTENT_SOURCES = {
    'client_cert_content': ('azaion_admin_api_client_cert', 'AZAION_ADMIN_API_CLIENT_CERT'),
    'client_key_content': ('azaion_admin_api_client_key', 'AZAION_ADMIN_API_CLIENT_KEY'),
    'ca_content': ('azaion_admin_api_ca', 'AZAION_ADMIN_API_CA'),
}
# Everything a module needs to call the admin API.
ADMIN_API_SOURCES = dict(TLS_CONTENT_SOURCES, **{
    'api_url': ('azaion_admin_api_url', 'AZAION_ADMIN_API_URL'),
    'api_token': ('azaion_admin_api_token', 'AZAION_ADMIN_API_TOKEN'),
})


class ControllerSecretError(Exception):
    """A file named for a secret cannot be read; the message names the variable and the fix."""


def _file_content(source, path):
    try:
        with open(os.path.expanduser(str(path))) as secret_file:
            return secret_file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ControllerSecretError('%s names the file %s, which cannot be read on the controller (%s); point %s at'
                                    ' the file that holds the value, or unset it'
                                    % (source, path, getattr(exc, 'strerror', None) or exc, source))


def controller_secret(variables, variable, environment_variable=None, template=None):
    """``(value, source)`` of a secret on the controller: the inventory ``variable``, else the
    file named by ``<variable>_file``, else the controller's ``environment_variable``, else the
    file named by ``<environment_variable>_FILE``; ``(None, None)`` when none is set. A file that
    is empty counts as not set: AWX writes a file for a credential input left empty.
    ``template`` renders a variable's value (an action plugin's templar); raises
    :class:`ControllerSecretError` when a named file cannot be read."""
    template = template or (lambda value: value)
    # (source, how to read it, whether it names a file), in order; each read only when needed.
    sources = [(variable, lambda: template(variables.get(variable)), False),
               (variable + '_file', lambda: template(variables.get(variable + '_file')), True)]
    if environment_variable:
        sources += [(environment_variable, lambda: os.environ.get(environment_variable), False),
                    (environment_variable + '_FILE', lambda: os.environ.get(environment_variable + '_FILE'), True)]
    for source, read, names_a_file in sources:
        value = read()
        if value in (None, ''):
            continue
        value = _file_content(source, value) if names_a_file else str(value)
        if value:
            return value, source
    return None, None


class ControllerSecretsAction(ActionBase):
    """Fill module options missing from the task from variables, then the controller's
    environment (and the files they name, see :func:`controller_secret`)."""

    TRANSFERS_FILES = False
    # Set by each subclass: the module to run, and option -> (inventory variable, environment variable or None).
    MODULE = None
    SOURCES = {}
    # What the module does on its station, for the message of a station lost meanwhile, and the
    # phase whose progress it keeps while it runs, if any (see _station_watch.py).
    WORK = None
    PROGRESS_PHASE = None
    # Options whose value is a file on the station, and the option that carries the same file's
    # content from the controller: one device cannot have both.
    STATION_FILE_OPTIONS = {'client_cert_content': 'client_cert', 'client_key_content': 'client_key',
                            'ca_content': 'ca_path'}

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ControllerSecretsAction, self).run(tmp, task_vars)
        module_args = dict(self._task.args)
        for option, (variable, environment_variable) in self.SOURCES.items():
            if module_args.get(option) not in (None, ''):
                continue
            try:
                value, source = controller_secret(task_vars, variable, environment_variable, self._templar.template)
            except ControllerSecretError as exc:
                result.update(failed=True, msg=str(exc))
                return result
            if value is None:
                continue
            station_option = self.STATION_FILE_OPTIONS.get(option)
            if station_option and module_args.get(station_option) not in (None, ''):
                result.update(failed=True, msg='%s is given twice: as a file on the station (the task\'s %s) and as %s on'
                                               ' the controller; keep one of them' % (station_option, station_option, source))
                return result
            module_args[option] = value
        url = module_args.get('api_url')
        if url and '@' in urlsplit(str(url)).netloc:
            # A second line behind the batch check: the module's arguments would carry the
            # password to the station and into every log of them.
            result.update(failed=True, msg='api_url has user info before its host (%s with "user:password@" left out):'
                                           ' a password in a URL ends up in logs; remove it from the URL (the token'
                                           ' goes in azaion_admin_api_token or AZAION_ADMIN_API_TOKEN)'
                                           % display_url(str(url)))
            return result
        self._warn_without_pipelining(module_args)
        result.update(execute_on_station(self, task_vars, self.WORK, self.PROGRESS_PHASE, module_name=self.MODULE,
                                         module_args=module_args))
        return result

    def _warn_without_pipelining(self, module_args):
        """Without pipelining, the module and its arguments (the secrets among them) are written
        to a file on the remote host for the task's lifetime (and kept there with
        ANSIBLE_KEEP_REMOTE_FILES); with it, they travel on the connection's standard input."""
        carried = sorted(option for option in self.SOURCES if option in module_args and option != 'api_url')
        if not carried or self._connection.transport in LOCAL_CONNECTIONS:
            return
        if not self._connection.is_pipelining_enabled():
            display.warning('%s: pipelining is off: the module file that carries %s is written to the station\'s disk'
                            ' for the task\'s lifetime (and kept there with ANSIBLE_KEEP_REMOTE_FILES); set'
                            ' ANSIBLE_PIPELINING=True (pipelining = True in ansible.cfg)'
                            % (self._play_context.remote_addr, ' and '.join(carried)))
