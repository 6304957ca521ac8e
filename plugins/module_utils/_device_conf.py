# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The device.conf format (``KEY=VALUE`` lines, comments and blank lines) and writing it safely
into a staged rootfs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import secrets
import stat

from ansible_collections.azaion.jetson.plugins.module_utils._files import read_all, remove_leftover_temporaries, write_file_atomic

EMAIL_KEY = 'AZAION_DEVICE_EMAIL'
PASSWORD_KEY = 'AZAION_DEVICE_PASSWORD'
PASSWORD_PATTERN = re.compile(r'^[0-9a-f]{32}$')
_KEY_PATTERN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class DeviceConfError(Exception):
    """device.conf cannot be read or understood; the message names the file and the fix."""


def parse_device_conf(text, path='device.conf'):
    """Return the file as a list of ``(key, value)`` pairs, ``key`` None for comments/blanks.

    A malformed line is reported by its number only: its content may be a secret.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            entries.append((None, line))
            continue
        key, sep, value = line.partition('=')
        key = key.strip()
        if not sep or not _KEY_PATTERN.match(key):
            raise DeviceConfError(
                '%s: line %d is not a KEY=VALUE line; fix or remove that line (the file is kept as it is)'
                % (path, number))
        entries.append((key, value.strip()))
    return entries


def read_credentials(path):
    """Return ``(email, password)`` from the device.conf at ``path``.

    Raises DeviceConfError, naming the file and the fix, when it is missing, unreadable or
    lacks either value.
    """
    try:
        with open(path, 'rb') as conf_file:
            raw = conf_file.read()
    except (IOError, OSError) as exc:
        raise DeviceConfError('cannot read %s: %s; write it first with azaion.jetson.device_conf'
                              % (path, exc.strerror or exc))
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        raise DeviceConfError('%s is not UTF-8 text; remove it so azaion.jetson.device_conf writes it anew' % path)
    values = dict((key, value) for key, value in parse_device_conf(text, path) if key)
    email = values.get(EMAIL_KEY)
    password = values.get(PASSWORD_KEY)
    if not email or not password:
        raise DeviceConfError('%s has no %s' % (path, EMAIL_KEY if not email else PASSWORD_KEY)
                              + '; write it with azaion.jetson.device_conf')
    return email, password


# ---------------------------------------------------------------------------------------------
# Writing device.conf into a staged rootfs (used by the azaion.jetson.device_conf module).
# ---------------------------------------------------------------------------------------------

DEVICE_CONF_RELPATH = 'etc/azaion/device.conf'
PASSWORD_MASK = '********'
_MAX_SYMLINKS = 40  # as Linux's path walk: more links than that is a loop
_EMAIL_PATTERN = re.compile(r'^[^\s@=#"\'\\]+@[^\s@=#"\'\\]+$')

PASSWORD_KEPT = 'kept'
PASSWORD_GENERATED = 'generated'
PASSWORD_ROTATED = 'rotated'


class RootfsPathError(DeviceConfError):
    """A path inside the rootfs cannot be resolved safely (it would leave the tree)."""


def generate_password():
    """Return a new device password: 32 lowercase hexadecimal characters from a CSPRNG."""
    return secrets.token_hex(16)


def is_valid_password(value):
    """True when ``value`` is a password this collection would have generated."""
    return bool(value) and PASSWORD_PATTERN.match(value) is not None


def check_email(email):
    """Raise DeviceConfError unless ``email`` can be written as a single device.conf value."""
    if not email or not _EMAIL_PATTERN.match(email):
        raise DeviceConfError(
            'email %r is not a plain address such as azaion-jetson-0042@azaion.com (no spaces, quotes,'
            ' "=", "#" or line breaks); derive it with the azaion.jetson.device_email filter' % (email,))


def parse_mode(value):
    """Return the permission bits given as an octal string (``'0600'``, ``'600'``) or an int.

    Raises DeviceConfError for anything else (symbolic modes are not supported).
    """
    mode = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        digits = value.strip()
        if digits.startswith('0o'):
            digits = digits[2:]
        if re.match(r'^[0-7]{1,5}$', digits):
            mode = int(digits, 8)
    if mode is None or not 0 <= mode <= 0o7777:
        raise DeviceConfError(
            'mode %r is not an octal file mode; quote it as an octal string such as \'0600\'' % (value,))
    return mode


def format_mode(mode):
    """``0o600`` -> ``'0600'``."""
    return '%04o' % mode


# --- chroot-style path resolution ------------------------------------------------------------

class ResolvedPath(object):
    """Where a rootfs-relative path really lives, seen as if the rootfs were ``/``.

    ``path``: the absolute station path (always inside the rootfs);
    ``exists``: whether ``path`` itself exists (never a symbolic link when it does);
    ``missing_dirs``: parent directories to create, outermost first.
    """

    def __init__(self, path, exists, missing_dirs):
        self.path = path
        self.exists = exists
        self.missing_dirs = missing_dirs

    def __repr__(self):
        return 'ResolvedPath(%r, exists=%r, missing_dirs=%r)' % (self.path, self.exists, self.missing_dirs)


def resolve_in_rootfs(root, relpath):
    """Resolve ``relpath`` inside the tree ``root`` with chroot semantics, never leaving it.

    Every component is looked at with lstat.  A symbolic link with a relative target is
    followed inside the tree; one whose target climbs above ``root`` with ``..``, one with an
    absolute target (on the station it would lead into the station's own file system, on the
    device somewhere else) and a loop of links raise RootfsPathError naming the link, its
    target and the fix.  Missing components are allowed: they are reported in
    ``missing_dirs`` (parents) and ``exists`` (the last one).
    """
    root = os.path.abspath(root)
    # Stack of (component, link that produced it or None, that link's target).
    pending = [(part, None, None) for part in reversed(relpath.split('/')) if part not in ('', '.')]
    resolved = []
    missing_from = None  # index in ``resolved`` of the first component that does not exist
    links = 0
    while pending:
        part, via_link, via_target = pending.pop()
        if part == '..':
            if not resolved:
                if via_link is None:
                    raise RootfsPathError('%s climbs above the rootfs %s' % (relpath, root))
                raise RootfsPathError(
                    '%s is a symbolic link to %s, which climbs above the rootfs %s with ".." (on the'
                    ' station it would lead outside the tree); remove the link or make it point to a'
                    ' directory inside the rootfs' % (via_link, via_target, root))
            resolved.pop()
            if missing_from is not None and len(resolved) <= missing_from:
                missing_from = None
            continue
        resolved.append(part)
        if missing_from is not None:
            continue
        current = os.path.join(root, *resolved)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            missing_from = len(resolved) - 1
            continue
        except OSError as exc:
            raise RootfsPathError('cannot inspect %s: %s' % (current, exc.strerror or exc))
        if stat.S_ISLNK(st.st_mode):
            links += 1
            target = os.readlink(current)
            if links > _MAX_SYMLINKS:
                raise RootfsPathError(
                    'too many levels of symbolic links resolving %s in the rootfs %s (a loop, last at %s'
                    ' -> %s); remove the loop' % (relpath, root, current, target))
            if target.startswith('/'):
                raise RootfsPathError(
                    '%s is a symbolic link to the absolute path %s: followed on the station it leads'
                    ' outside the rootfs %s (the station and the device disagree about where it'
                    ' leads), so nothing is written through it; remove the link or make it a'
                    ' directory (or file) inside the rootfs, or a relative link that stays inside it'
                    % (current, target, root))
            resolved.pop()
            for link_part in reversed(target.split('/')):
                if link_part not in ('', '.'):
                    pending.append((link_part, current, target))
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise RootfsPathError(
                '%s is not a directory, so %s cannot be reached in the rootfs %s; remove it or make it'
                ' a directory' % (current, relpath, root))
    if not resolved:
        raise RootfsPathError('%s resolves to the rootfs %s itself' % (relpath, root))
    path = os.path.join(root, *resolved)
    if missing_from is None:
        return ResolvedPath(path, True, [])
    missing_dirs = [os.path.join(root, *resolved[:index + 1]) for index in range(missing_from, len(resolved) - 1)]
    return ResolvedPath(path, False, missing_dirs)


# --- owner and group from the rootfs's own account databases -------------------------------

def parse_id_database(text):
    """``etc/passwd`` or ``etc/group`` text -> {name: id}.  Odd lines are skipped."""
    ids = {}
    for line in text.splitlines():
        if not line or line.startswith(('#', '+', '-')):
            continue
        fields = line.split(':')
        if len(fields) < 3 or not fields[2].isdigit():
            continue
        ids.setdefault(fields[0], int(fields[2]))
    return ids


def lookup_id(root, name, database):
    """Resolve an owner (``database='passwd'``) or group (``'group'``) in the rootfs ``root``.

    Numeric ids are returned as they are; ``root`` is 0 when the rootfs has no entry for it;
    any other name must be in the rootfs's own ``etc/passwd`` / ``etc/group`` (read through
    resolve_in_rootfs), else DeviceConfError naming the name, the file and the fix.
    """
    what = 'user' if database == 'passwd' else 'group'
    option = 'owner' if database == 'passwd' else 'group'
    name = str(name).strip()
    if name.isdigit():
        return int(name)
    if not name:
        raise DeviceConfError('%s is empty; give a name that exists in the rootfs or a numeric id' % option)
    relpath = 'etc/' + database
    resolved = resolve_in_rootfs(root, relpath)
    ids = {}
    if resolved.exists:
        try:
            with open(resolved.path, 'rb') as db_file:
                ids = parse_id_database(db_file.read().decode('utf-8', 'replace'))
        except (IOError, OSError) as exc:
            raise DeviceConfError('cannot read %s to look up the %s %s: %s'
                                  % (resolved.path, what, name, exc.strerror or exc))
    if name in ids:
        return ids[name]
    if name == 'root':
        return 0
    if not resolved.exists:
        raise DeviceConfError(
            'cannot look up the %s %s: the rootfs has no %s (%s); stage the rootfs first, or give a'
            ' numeric %s' % (what, name, relpath, resolved.path, 'uid' if what == 'user' else 'gid'))
    raise DeviceConfError(
        'the %s %s is not in %s (the rootfs\'s own %s); create the %s in the image first or give a'
        ' numeric %s' % (what, name, resolved.path, relpath, what, 'uid' if what == 'user' else 'gid'))


# --- content: merge, render, mask -----------------------------------------------------------

def plan_device_conf(existing_text, email, rotate=False, path='device.conf', generate=generate_password):
    """Work out the new device.conf text from the current one (None when there is no file).

    Keeps every other line (comments, blanks, other ``KEY=VALUE``) in order, updates the
    email and password lines in place (appending them when missing; later duplicates of
    either key are dropped) and keeps a valid password for the same email unless ``rotate``.

    Returns a dict: ``text`` (the new content), ``password_state`` (kept/generated/rotated),
    ``reason`` (why, human readable, no secrets), ``password_changed`` (bool) and
    ``secrets`` (every password value read or generated, for no_log).
    """
    lines = existing_text.splitlines() if existing_text is not None else []
    entries = parse_device_conf(existing_text, path) if existing_text is not None else []
    values = {}
    for key, value in entries:
        if key in (EMAIL_KEY, PASSWORD_KEY):
            values[key] = value  # the last one wins, as read_credentials reads it
    old_email = values.get(EMAIL_KEY)
    old_password = values.get(PASSWORD_KEY)
    found_secrets = [old_password] if old_password else []

    if existing_text is None:
        state, reason = PASSWORD_GENERATED, 'new file'
    elif rotate:
        if old_password:
            state, reason = PASSWORD_ROTATED, 'rotation requested'
        else:
            state, reason = PASSWORD_GENERATED, 'rotation requested and the file had no password'
    elif old_email is not None and old_email != email:
        state, reason = PASSWORD_GENERATED, 'the email changed from %s' % old_email
    elif not old_password:
        state, reason = PASSWORD_GENERATED, 'the file had no password'
    elif not is_valid_password(old_password):
        state, reason = PASSWORD_GENERATED, 'the password in the file was not 32 lowercase hex characters'
    else:
        state, reason = PASSWORD_KEPT, 'valid password for this email'
    if state == PASSWORD_KEPT:
        password = old_password
    else:
        password = generate()
        found_secrets.append(password)

    wanted = {EMAIL_KEY: email, PASSWORD_KEY: password}
    written = set()
    out = []
    for line, (key, dummy) in zip(lines, entries):
        if key in wanted:
            if key not in written:
                out.append('%s=%s' % (key, wanted[key]))
                written.add(key)
            continue
        out.append(line)
    for key in (EMAIL_KEY, PASSWORD_KEY):
        if key not in written:
            out.append('%s=%s' % (key, wanted[key]))
    return {
        'text': '\n'.join(out) + '\n',
        'password_state': state,
        'reason': reason,
        'password_changed': state != PASSWORD_KEPT,
        'secrets': found_secrets,
    }


def mask_device_conf(text, new_password=False):
    """``text`` with every password value replaced by a mask, for diffs and logs.

    With ``new_password`` the mask says ``(new)``.  Lines that are not ``KEY=VALUE`` are kept.
    """
    if text is None:
        return ''
    mask = PASSWORD_MASK + (' (new)' if new_password else '')
    out = []
    for line in text.splitlines():
        key, sep, dummy = line.partition('=')
        if sep and key.strip() == PASSWORD_KEY and not line.lstrip().startswith('#'):
            out.append('%s=%s' % (key, mask))
        else:
            out.append(line)
    return '\n'.join(out) + ('\n' if out else '')


# --- reading and writing the file ---------------------------------------------------------

def read_existing(path):
    """Return the text of the regular file at ``path`` (not a symlink), or None if missing.

    Raises DeviceConfError naming the file and the fix; never quotes the content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeviceConfError('cannot read the existing %s: %s; make it readable or remove it'
                              % (path, exc.strerror or exc))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DeviceConfError('%s exists but is not a regular file; remove it' % path)
        data = read_all(fd)
    except OSError as exc:
        raise DeviceConfError('cannot read the existing %s: %s; make it readable or remove it'
                              % (path, exc.strerror or exc))
    finally:
        os.close(fd)
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise DeviceConfError('the existing %s is not UTF-8 text; fix it or remove it so it is written'
                              ' anew (the file is kept as it is)' % path)


def describe_write_error(path, exc):
    """A message for an OSError raised while writing ``path`` (no secrets in it)."""
    if exc.errno == errno.EROFS:
        return ('cannot write %s: the file system is read-only (EROFS); remount the rootfs read-write'
                ' or stage it on writable storage' % path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ('cannot write %s: permission denied (%s); the rootfs tree is read-only for this user:'
                ' run the task with become or make the tree writable' % (path, errno.errorcode[exc.errno]))
    return 'cannot write %s: %s' % (path, exc.strerror or exc)


def check_writable(path):
    """Raise DeviceConfError if the nearest existing directory of ``path`` cannot be written."""
    directory = os.path.dirname(path)
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    read_only = getattr(os, 'ST_RDONLY', None)
    if read_only is not None and hasattr(os, 'statvfs') and os.statvfs(directory).f_flag & read_only:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), directory)


def make_dirs(paths, mode=0o755):
    """Create ``paths`` (outermost first) with ``mode``; an existing one must be a real directory."""
    for path in paths:
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            raise DeviceConfError('%s appeared while writing and is not a directory; run again' % path)
        os.chmod(path, mode)


# --- the azaion.jetson.device_conf module's work ---------------------------------------------

def device_conf_argument_spec():
    """The options of azaion.jetson.device_conf (a fresh dict); station modules validate with it too."""
    return dict(
        rootfs_dir=dict(type='path', required=True),
        email=dict(type='str', required=True),
        owner=dict(type='str', default='root'),
        group=dict(type='str', default='root'),
        mode=dict(type='raw', default='0600'),
        rotate=dict(type='bool', default=False),
    )


def describe_outcome(plan, existed, content_changed, attrs_changed, path, check_mode):
    """The human-readable ``msg``."""
    password = 'password %s' % plan['password_state']
    if existed and plan['password_state'] != 'kept':
        password += ': ' + plan['reason']
    if not existed:
        verb, what = ('would write', 'wrote'), '%s (new file; %s)' % (path, password)
    elif content_changed:
        verb, what = ('would update', 'updated'), '%s (%s)' % (path, password)
    elif attrs_changed:
        verb, what = (('would fix', 'fixed'),
                      'the owner, group or mode of %s (content unchanged; %s)' % (path, password))
    else:
        return '%s is up to date (%s)' % (path, password)
    return '%s %s' % (verb[0] if check_mode else verb[1], what)


def write_device_conf(module):
    """Write the device.conf ``module.params`` describe; ends with ``module.exit_json``/``fail_json``.

    ``module`` is the AnsibleModule of azaion.jetson.device_conf, or one device's stand-in in a
    station run (options of :func:`device_conf_argument_spec`).
    """
    params = module.params
    rootfs_dir = params['rootfs_dir']
    email = params['email']

    if not os.path.exists(rootfs_dir):
        if module.check_mode:
            # In a check run, the task that stages the rootfs did not run either.
            module.warn('rootfs_dir %s does not exist yet; a real run writes device.conf once it is staged' % rootfs_dir)
            module.exit_json(changed=True, email=email, path=os.path.join(rootfs_dir, DEVICE_CONF_RELPATH),
                             password_state='generated', msg='would write device.conf once the rootfs is staged')
        module.fail_json(msg='rootfs_dir %s does not exist; stage the rootfs first or fix the path' % rootfs_dir)
    if not os.path.isdir(rootfs_dir):
        module.fail_json(msg='rootfs_dir %s is not a directory; give the staged rootfs directory' % rootfs_dir)
    root = os.path.realpath(rootfs_dir)

    # Everything is checked before anything is written.
    try:
        check_email(email)
        mode = parse_mode(params['mode'])
        uid = lookup_id(root, params['owner'], 'passwd')
        gid = lookup_id(root, params['group'], 'group')
        target = resolve_in_rootfs(root, DEVICE_CONF_RELPATH)
        existing = read_existing(target.path) if target.exists else None
        plan = plan_device_conf(existing, email, rotate=params['rotate'], path=target.path)
    except DeviceConfError as exc:
        module.fail_json(msg=str(exc))
    # Defence in depth: the result sanitiser strips these values should one ever slip in.
    for secret in plan['secrets']:
        module.no_log_values.add(secret)

    existed = existing is not None
    content_changed = existing != plan['text']
    attrs_changed = False
    if existed and not content_changed:
        current = os.stat(target.path)
        attrs_changed = (current.st_uid, current.st_gid, stat.S_IMODE(current.st_mode)) != (uid, gid, mode)
    changed = content_changed or attrs_changed

    if not module.check_mode:
        # What a write killed before its rename left: removed even when the file itself is right.
        remove_leftover_temporaries(target.path)
    if changed and not module.check_mode:
        try:
            check_writable(target.path)
            make_dirs(target.missing_dirs)
            if content_changed:
                write_file_atomic(target.path, plan['text'].encode('utf-8'), mode=mode, uid=uid, gid=gid)
            else:
                os.chown(target.path, uid, gid, follow_symlinks=False)
                os.chmod(target.path, mode)
        except DeviceConfError as exc:
            module.fail_json(msg=str(exc))
        except OSError as exc:
            module.fail_json(msg=describe_write_error(target.path, exc))

    result = dict(
        changed=changed,
        path=target.path,
        email=email,
        password_state=plan['password_state'],
        owner_uid=uid,
        group_gid=gid,
        mode=format_mode(mode),
        msg=describe_outcome(plan, existed, content_changed, attrs_changed, target.path, module.check_mode),
    )
    if module._diff:
        result['diff'] = dict(
            before=mask_device_conf(existing),
            after=mask_device_conf(plan['text'], new_password=plan['password_changed']),
            before_header=target.path if existed else '%s (absent)' % target.path,
            after_header=target.path,
        )
    module.exit_json(**result)
