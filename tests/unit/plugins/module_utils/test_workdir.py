"""The station's workdir: made 0700, refused when it is a link, a file or another user's, closed
when it is open and holds only the run's own entries, refused when it holds a planted link or
another user's entry; and the writers under it (clone_tree, l4t_workspace) never write through
a link they did not make."""

import os
import stat

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils._workdir import (
    WorkdirError,
    check_no_planted_link,
    close_workdir,
    ensure_workdir,
    workdir_problems,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.l4t_workspace import main as l4t_workspace

AS_ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not AS_ROOT, reason='giving a file to another user needs root')
OTHER_UID = 1000  # the image's user, a real person's account on a station

# The run's own entries at each level it makes, as a run leaves them.
OWN_DIRECTORIES = ['staging/Linux_for_Tegra/rootfs/etc', 'ports/1-1/Linux_for_Tegra/rootfs/etc/azaion',
                   'ports/1-1/Linux_for_Tegra.tmp-4242', 'devices/AZJN-0001', 'images/group-1/Linux_for_Tegra',
                   'logs', 'flash-slots', 'reports']
OWN_FILES = ['devices/AZJN-0001/state.json', 'devices/AZJN-0001/identity-sync.json', 'images/group-1.lock',
             'logs/AZJN-0001-flash-2025-01-01T00:00:00Z.log', 'flash-slots/slot-0.lock', 'reports/batch.json']


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def make_workdir(path, mode=0o700):
    """A workdir as a run leaves it, its mode then set to ``mode``."""
    for relpath in OWN_DIRECTORIES:
        os.makedirs(os.path.join(str(path), relpath))
    for relpath in OWN_FILES:
        with open(os.path.join(str(path), relpath), 'w') as own:
            own.write('{}\n')
    # The bundle's own links, inside its clones: not the workdir's to judge.
    os.symlink('../../lib', os.path.join(str(path), 'ports/1-1/Linux_for_Tegra/rootfs/etc/lib-link'))
    os.chmod(str(path), mode)
    return str(path)


# -- ensure_workdir ---------------------------------------------------------------------------------

def test_a_missing_workdir_is_made_0700_whatever_the_umask_and_its_parents_as_mkdir_p_makes_them(tmp_path):
    workdir = tmp_path / 'var' / 'lib' / 'azaion-jetson'
    previous = os.umask(0)
    try:
        assert ensure_workdir(str(workdir)) is True
    finally:
        os.umask(previous)
    assert mode_of(workdir) == 0o700 and os.lstat(str(workdir)).st_uid == os.geteuid()
    assert mode_of(tmp_path / 'var') == 0o755 and mode_of(tmp_path / 'var' / 'lib') == 0o755


def test_an_existing_workdir_is_left_as_it_is_for_workdir_problems_to_judge(tmp_path):
    workdir = tmp_path / 'station'
    workdir.mkdir()
    os.chmod(str(workdir), 0o777)
    assert ensure_workdir(str(workdir)) is False and mode_of(workdir) == 0o777
    os.symlink(str(tmp_path / 'nowhere'), str(tmp_path / 'dangling'))
    assert ensure_workdir(str(tmp_path / 'dangling')) is False and not os.path.exists(str(tmp_path / 'nowhere'))


# -- workdir_problems -------------------------------------------------------------------------------

def test_a_missing_or_closed_workdir_of_the_runs_own_has_no_problem(tmp_path):
    assert workdir_problems(str(tmp_path / 'not-made-yet')) == ([], False)
    assert workdir_problems(make_workdir(tmp_path / 'station')) == ([], False)


@pytest.mark.parametrize('mode', [0o777, 0o770, 0o755, 0o701])
def test_a_workdir_open_to_others_with_only_the_runs_own_entries_can_be_closed(tmp_path, mode):
    workdir = make_workdir(tmp_path / 'station', mode)
    if AS_ROOT:
        # A clone takes the bundle's owner: a port tree of a bundle a person unpacked is theirs.
        os.chown(os.path.join(workdir, 'ports/1-1/Linux_for_Tegra'), OTHER_UID, OTHER_UID)
        os.chown(os.path.join(workdir, 'staging/Linux_for_Tegra'), OTHER_UID, OTHER_UID)
    problems, closable = workdir_problems(workdir)
    assert closable is True
    assert problems == ["jetson_workdir %s is open to others (mode %04o), but it holds every device's password;"
                        ' chmod 0700 %s' % (workdir, mode, workdir)]
    close_workdir(workdir)
    assert mode_of(workdir) == 0o700 and workdir_problems(workdir) == ([], False)


@pytest.mark.parametrize('relpath', ['ports', 'ports/1-2', 'ports/1-1/Linux_for_Tegra.old-4242', 'staging/Linux_for_Tegra',
                                     'devices/AZJN-0002', 'devices/AZJN-0001/state.json', 'images/group-2', 'logs/x.log',
                                     'reports/batch.csv', 'flash-slots/slot-1.lock', 'README'])
def test_a_planted_link_on_the_runs_own_paths_is_named_with_its_target_and_the_workdir_is_not_closed(tmp_path, relpath):
    workdir = make_workdir(tmp_path / 'station', 0o777)
    outside = tmp_path / 'outside'
    outside.mkdir()
    planted = os.path.join(workdir, relpath)
    if os.path.isdir(planted):
        os.rename(planted, planted + '.moved')
    elif os.path.lexists(planted):
        os.unlink(planted)
    os.symlink(str(outside), planted)
    problems, closable = workdir_problems(workdir)
    assert closable is False
    assert problems == ['jetson_workdir %s is open to others (mode 0777), and what is in it was not all made by the'
                        ' run: %s is a symbolic link to %s; the run does not close (nor write in) a workdir that may'
                        ' hold what others planted: remove those entries, then chmod 0700 %s'
                        % (workdir, relpath, outside, workdir)]
    assert mode_of(workdir) == 0o777


def test_a_planted_link_is_a_problem_in_a_closed_workdir_too(tmp_path):
    workdir = make_workdir(tmp_path / 'station')
    os.symlink('/etc', os.path.join(workdir, 'ports', '1-2'))
    assert workdir_problems(workdir) == (['jetson_workdir %s holds what the run did not make: ports/1-2 is a symbolic'
                                          ' link to /etc; the run writes only through what it made itself: remove'
                                          ' those entries' % workdir], False)


def test_the_walk_stops_at_the_bundles_clones_and_does_not_enter_a_planted_link(tmp_path):
    workdir = make_workdir(tmp_path / 'station', 0o777)
    os.symlink('/etc', os.path.join(workdir, 'ports/1-1/Linux_for_Tegra/rootfs/etc/azaion/passwd'))
    os.symlink('/etc', os.path.join(workdir, 'images/group-1/Linux_for_Tegra/rootfs'))
    assert workdir_problems(workdir)[1] is True  # the clones' links are the bundle's (and the image group's)
    os.symlink(str(tmp_path), os.path.join(workdir, 'staging', 'Linux_for_Tegra.tmp-1'))
    problems, _closable = workdir_problems(workdir)
    assert problems[0].count('is a symbolic link') == 1  # nothing named through the link


@as_root
@pytest.mark.parametrize('relpath', ['logs', 'ports/1-1', 'devices/AZJN-0001', 'devices/AZJN-0001/state.json',
                                     'images/group-1', 'reports/batch.json'])
def test_another_users_entry_on_the_runs_own_paths_keeps_the_workdir_from_being_closed(tmp_path, relpath):
    workdir = make_workdir(tmp_path / 'station', 0o757)
    os.chown(os.path.join(workdir, relpath), OTHER_UID, OTHER_UID)
    problems, closable = workdir_problems(workdir)
    assert closable is False and len(problems) == 1
    assert ': %s is owned by uid %d' % (relpath, OTHER_UID) in problems[0]
    assert problems[0].endswith('remove those entries, then chmod 0700 %s' % workdir)


@as_root
def test_a_workdir_of_another_user_is_refused(tmp_path):
    workdir = make_workdir(tmp_path / 'station', 0o700)
    os.chown(workdir, OTHER_UID, OTHER_UID)
    problems, closable = workdir_problems(workdir)
    assert closable is False
    assert problems == ["jetson_workdir %s is owned by %s, not by the run's user uid 0 (root), so it may hold what"
                        ' they put there; move it away, or set jetson_workdir to a directory that does not exist yet'
                        ' (the run makes it)' % (workdir, problems[0].split(' is owned by ')[1].split(', not')[0])]
    assert 'uid %d' % OTHER_UID in problems[0]


def test_a_workdir_that_is_a_link_or_a_file_is_refused(tmp_path):
    real = make_workdir(tmp_path / 'real')
    link = str(tmp_path / 'station')
    os.symlink(real, link)
    assert workdir_problems(link) == (['jetson_workdir %s is a symbolic link to %s; set jetson_workdir to the real'
                                       ' path %s, the run follows no link it did not make' % (link, real, real)], False)
    a_file = tmp_path / 'a-file'
    a_file.write_text('not a directory\n')
    assert workdir_problems(str(a_file)) == (['jetson_workdir %s is not a directory; move it away or set jetson_workdir'
                                              ' to a directory of its own' % a_file], False)


# -- check_no_planted_link -----------------------------------------------------------------------------

def test_a_write_under_the_workdir_is_refused_through_any_link_between_the_two(tmp_path):
    workdir = make_workdir(tmp_path / 'station')
    conf = os.path.join(workdir, 'ports/1-1/Linux_for_Tegra/rootfs/etc/azaion/device.conf')
    check_no_planted_link(workdir, conf)  # nothing planted; the file itself need not exist
    check_no_planted_link(workdir, os.path.join(workdir, 'ports/1-9/Linux_for_Tegra'))  # nor its directories
    check_no_planted_link(workdir, workdir)
    os.symlink(str(tmp_path), os.path.join(workdir, 'ports/1-2'))
    with pytest.raises(WorkdirError) as middle:
        check_no_planted_link(workdir, os.path.join(workdir, 'ports/1-2/Linux_for_Tegra/rootfs'))
    assert str(middle.value) == ('%s is a symbolic link to %s, which the run did not make and does not write through;'
                                 ' remove the link (the run makes the directory itself)'
                                 % (os.path.join(workdir, 'ports/1-2'), tmp_path))
    os.symlink('/etc/passwd', os.path.join(workdir, 'devices/AZJN-0001/identity-sync.json.new'))
    with pytest.raises(WorkdirError, match='identity-sync.json.new is a symbolic link to /etc/passwd'):
        check_no_planted_link(workdir, os.path.join(workdir, 'devices/AZJN-0001/identity-sync.json.new'))
    with pytest.raises(WorkdirError, match='is not under jetson_workdir'):
        check_no_planted_link(workdir, str(tmp_path / 'elsewhere'))


def test_the_workdir_itself_is_for_workdir_problems_to_judge(tmp_path):
    real = make_workdir(tmp_path / 'real')
    link = str(tmp_path / 'station')
    os.symlink(real, link)
    check_no_planted_link(link, os.path.join(link, 'devices/AZJN-0001/state.json'))


# -- the writers: clone_tree and l4t_workspace ---------------------------------------------------------

def make_bundle(path):
    os.makedirs(os.path.join(str(path), 'rootfs', 'etc'))
    with open(os.path.join(str(path), 'flash.sh'), 'w') as script:
        script.write('#!/bin/sh\n')
    return str(path)


@pytest.mark.parametrize('planted', ['ports/1-1', 'ports/1-1/Linux_for_Tegra'])
def test_clone_tree_does_not_write_through_a_link_at_its_tree_or_its_parent(tmp_path, planted):
    bundle = make_bundle(tmp_path / 'bundle')
    workdir = make_workdir(tmp_path / 'station')
    outside = tmp_path / 'outside'
    outside.mkdir()
    link = os.path.join(workdir, planted)
    os.rename(link, link + '.moved')
    os.symlink(str(outside), link)
    with pytest.raises(ValueError) as refused:
        clone_tree(bundle, os.path.join(workdir, 'ports/1-1/Linux_for_Tegra'), ['rootfs/boot'])
    assert str(refused.value) == ('%s is a symbolic link to %s, which the run did not make and does not write'
                                  ' through; remove the link (the run makes the directory itself)' % (link, outside))
    assert os.listdir(str(outside)) == [] and os.path.islink(link)


def test_l4t_workspace_names_the_link_instead_of_a_traceback(tmp_path, module_runner):
    bundle = make_bundle(tmp_path / 'bundle')
    outside = tmp_path / 'outside'
    outside.mkdir()
    os.makedirs(str(tmp_path / 'station' / 'ports'))
    os.symlink(str(outside), str(tmp_path / 'station' / 'ports' / '1-1'))
    dest = str(tmp_path / 'station' / 'ports' / '1-1' / 'Linux_for_Tegra')
    result = module_runner(l4t_workspace, dict(src=bundle, dest=dest))
    assert result['failed'] is True and os.listdir(str(outside)) == []
    assert result['msg'] == ('cannot make the working tree %s from %s: %s is a symbolic link to %s, which the run did'
                             ' not make and does not write through; remove the link (the run makes the directory'
                             ' itself)' % (dest, bundle, tmp_path / 'station' / 'ports' / '1-1', outside))
