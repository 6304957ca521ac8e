# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The rules of the inventory's variables, checked on the controller before anything is written.

Each rule reads one variable of a device (or of its station) and adds what is wrong with it to
``problems`` as ``<who>: <variable> ...; <fix>``. A problem never shows a secret: a token's
value, or the user info of a URL. What only the station can tell (real paths, files, the USB
bus) is checked there, by azaion.jetson.l4t_station_check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import re

from urllib.parse import urlsplit, urlunsplit

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import SERIAL_PATTERN
from ansible_collections.azaion.jetson.plugins.module_utils._flash import MAX_INSTANCES
from ansible_collections.azaion.jetson.plugins.module_utils._usb import BOARD_CONFIGS, USB_PORT_PATTERN

# A batch name names report files, as a serial names a device's directory.
BATCH_NAME_PATTERN = SERIAL_PATTERN
# What an admin API token may be made of: visible ASCII, no white space.
TOKEN_PATTERN = re.compile(r'^[\x21-\x7e]+$')
URL_SCHEMES = ('http', 'https')


def get(variables, name, default=None):
    """A variable, or ``default`` when it is not set (or set to nothing)."""
    if variables is None:
        return default
    try:
        value = variables[name]
    except KeyError:
        return default
    return default if value is None else value


def _kind(value):
    if isinstance(value, bool):
        return 'a true/false value'
    if isinstance(value, dict):
        return 'a mapping'
    if isinstance(value, (list, tuple, set)):
        return 'a list'
    return 'a %s' % type(value).__name__


def text(who, value, variable, problems):
    """``value`` as text ('' when unset); a mapping, list or true/false value is a problem."""
    if value is None:
        return ''
    if isinstance(value, (bool, dict, list, tuple, set)) or not isinstance(value, (str, int, float)):
        problems.append('%s: %s is %s, not a single value; set it to one value' % (who, variable, _kind(value)))
        return ''
    return str(value)


def flag(who, value, variable, problems):
    """A true/false value. Anything else is a problem: "treu" must not quietly mean false where
    it decides an irreversible step."""
    if value is None or isinstance(value, bool):
        return bool(value)
    spelled = str(value).strip().lower()
    if spelled in ('true', 'yes', 'on', '1'):
        return True
    if spelled in ('false', 'no', 'off', '0', ''):
        return False
    problems.append('%s: %s is %r, which is neither true nor false; set it to true or false' % (who, variable, value))
    return False


def absolute_path(who, value, variable, problems, what):
    """An absolute path on the station, normalized ('' when unset); ``what`` says what it is for
    the fix."""
    path = text(who, value, variable, problems)
    if not path:
        return ''
    if '\0' in path or '\n' in path:
        problems.append('%s: %s has a control character; set it to the absolute path of %s on the station'
                        % (who, variable, what))
        return ''
    if not posixpath.isabs(path):
        problems.append('%s: %s %r is not an absolute path; set it to the absolute path of %s on the station'
                        % (who, variable, path, what))
        return ''
    return posixpath.normpath(path)


def whole_number(who, value, variable, problems, low, high, why):
    """A whole number from ``low`` to ``high`` (None when it is not one)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.match(r'^\s*-?[0-9]+\s*$', value):
        number = int(value)
    if number is None or not low <= number <= high:
        problems.append('%s: %s is %r; set it to a whole number from %d to %d (%s)'
                        % (who, variable, value, low, high, why))
        return None
    return number


def serial(who, value, variable, problems):
    """A device serial: it names the device's directory, logs and records on the station."""
    serial_text = text(who, value, variable, problems)
    if value is not None and serial_text == '' and not isinstance(value, (dict, list, tuple, set, bool)):
        problems.append('%s: %s is empty; set it to the serial on the label, for example AZJN-0042, or leave'
                        ' jetson_serial unset to use the host name' % (who, variable))
        return ''
    if serial_text and not SERIAL_PATTERN.match(serial_text):
        problems.append('%s: %s %r is not a label serial (ASCII letters, digits, ".", "_" and "-", starting with a'
                        ' letter or digit, at most 64 characters, no spaces); set %s to the serial on the label,'
                        ' for example AZJN-0042' % (who, variable, serial_text, variable))
        return ''
    return serial_text


def usb_port(who, value, variable, problems):
    """A USB port path <busnum>-<devpath>, as NVIDIA's --usb-instance takes it."""
    if isinstance(value, int) and not isinstance(value, bool):
        problems.append('%s: %s is the number %r, not a USB port path; set it to the port path in quotes, such as'
                        ' "1-3" or "1-8.4" (see lsusb -t)' % (who, variable, value))
        return ''
    port = text(who, value, variable, problems)
    if port and not USB_PORT_PATTERN.match(port):
        problems.append('%s: %s %r is not a USB port path <busnum>-<devpath>; set it to the port of the device\'s'
                        ' cable, such as 1-3 or 1-8.4 (see lsusb -t)' % (who, variable, port))
        return ''
    return port


def board(who, value, variable, problems):
    name = text(who, value, variable, problems)
    if name and name not in BOARD_CONFIGS:
        problems.append('%s: %s %r is not a board this collection knows; set it to one of %s, or leave it unset'
                        ' to take the board from the USB product id' % (who, variable, name,
                                                                        ', '.join(sorted(BOARD_CONFIGS))))
        return ''
    return name


def shown_url(url):
    """``url`` without its user info, for messages: a password in a URL is never shown."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition('@')[2]
        return urlunsplit((parts.scheme, netloc, parts.path, '', ''))
    except ValueError:
        return '(a URL that cannot be parsed)'


def url(who, value, variable, problems, what):
    """An http(s) URL with a host, no user info, no query and no fragment. A URL with user info
    or a query (where a token might be) is refused and never shown whole: the returned URL (for
    the device context) is without them."""
    url_text = text(who, value, variable, problems)
    if not url_text:
        return ''
    shown = shown_url(url_text)
    if '?' in url_text or '#' in url_text:
        problems.append('%s: %s has a query or a fragment (%s with it left out); remove it: give the base URL of %s,'
                        ' such as https://host:port' % (who, variable, shown, what))
        return shown
    try:
        parts = urlsplit(url_text)
        hostname = parts.hostname
        dummy = parts.port  # a port that is not a number from 0 to 65535 raises ValueError
    except ValueError:
        problems.append('%s: %s %s is not a URL; set it to the URL of %s, such as https://host:port'
                        % (who, variable, shown, what))
        return ''
    if '@' in parts.netloc:
        problems.append('%s: %s has user info before its host (%s with "user:password@" left out): a password in a'
                        ' URL ends up in logs; remove it from the URL%s' % (
                            who, variable, shown, ' (the admin API takes its token from azaion_admin_api_token or'
                            ' AZAION_ADMIN_API_TOKEN)' if 'admin API' in what else ''))
        return shown
    if any(character.isspace() for character in url_text):
        problems.append('%s: %s %r has white space; set it to the URL of %s, such as https://host:port'
                        % (who, variable, shown, what))
        return ''
    if parts.scheme not in URL_SCHEMES or not hostname:
        problems.append('%s: %s %s is not an http or https URL with a host; set it to the URL of %s, such as'
                        ' https://host:port' % (who, variable, shown, what))
        return ''
    return url_text


def token(value, source, problems):
    """The admin API token's presence and characters; its value is never shown."""
    if value is None or value == '':
        problems.append('the admin API token is not set; set azaion_admin_api_token (from a vault) or'
                        ' azaion_admin_api_token_file, or export AZAION_ADMIN_API_TOKEN_FILE (a file that holds the'
                        ' token) on the controller')
        return
    if not isinstance(value, str) or not TOKEN_PATTERN.match(value):
        problems.append('the admin API token in %s has characters a token cannot have (white space, control or'
                        ' non-ASCII characters); set %s to the token exactly as issued' % (source, source))


def batch_name(who, value, variable, problems):
    name = text(who, value, variable, problems)
    if value is not None and name == '':
        if not isinstance(value, (dict, list, tuple, set, bool)):
            problems.append('%s: %s is empty; set it to a plain name such as 2026-11-wave1, or leave it unset'
                            ' (the report is then batch.json)' % (who, variable))
        return 'batch'
    name = name or 'batch'
    if not BATCH_NAME_PATTERN.match(name):
        problems.append('%s: %s %r is not a plain name (it names the report files); set it to letters, digits, ".",'
                        ' "_" and "-", such as 2026-11-wave1' % (who, variable, name))
        return 'batch'
    return name


def concurrency(who, value, variable, problems):
    return whole_number(who, value, variable, problems, 1, MAX_INSTANCES,
                        "NVIDIA's massflash flashes at most %d devices at once" % MAX_INSTANCES)
