"""Admin API faults during real provision runs: a batch converges, and every failure is clean."""

import collections
import os
import re

from conftest import assert_ok

MAX_RUNS = 8
# Raw exception text a device's error must never be left with alone: it would not say what to do.
RAW_EXCEPTION_TEXT = ('Traceback', 'Errno', 'Connection refused', 'Max retries exceeded', 'urlopen error')


def flaky_api_faults():
    """Over every admin API request: 10 % dropped connections (half before the server acts, half
    after it acted, the reply lost) and 30 % 5xx answers (500, 502, 503 alike). The first
    rule that fires wins, so each rule's rate is of the requests the rules before let through."""
    return [{'drop': 'before', 'rate': 0.05}, {'drop': 'after', 'rate': 0.05 / 0.95},
            {'status': 500, 'rate': 0.1 / 0.9}, {'status': 502, 'rate': 0.1 / 0.8}, {'status': 503, 'rate': 0.1 / 0.7}]


def fault_counts(api):
    return collections.Counter(entry['fault'] for entry in api.request_log() if entry['fault'])


def device_errors(result, serials):
    """Each device's own failure message, from its 'Report this device's outcome' line."""
    errors = {}
    for serial in serials:
        found = re.search(r'fatal: \[%s\]: FAILED! => \{\s*"changed": \w+,\s*"msg": "(.*)"\s*\}' % serial, result.stdout)
        errors[serial] = found.group(1) if found else None
    return errors


def test_a_flaky_api_over_20_devices_converges_with_no_duplicate_and_no_mismatch(make_batch, figures):
    # One retry per request instead of five, so that the faults do fail devices and the batch
    # has to converge over several runs.
    batch = make_batch(20, extra_vars={'identity_api_retries': 1})
    batch.api.set_faults(flaky_api_faults())
    runs = []
    while len(runs) < MAX_RUNS:
        runs.append(batch.run())
        if runs[-1].returncode == 0 and not batch.not_done():
            break
    faults = fault_counts(batch.api)
    requests = batch.api.request_log()
    lost_after_write = [entry for entry in requests if entry['fault'] == 'drop after' and entry['applied']]
    duplicates, mismatches = batch.duplicate_accounts(), batch.password_mismatches()
    figures('flaky API, 20 devices: converged after %d run(s) (%s); %d requests, faults fired: %s '
            '(%d writes applied with the reply lost); %d duplicate accounts, %d password mismatches, %d devices not done'
            % (len(runs), ', '.join('rc=%d' % run.returncode for run in runs), len(requests),
               ', '.join('%s x%d' % item for item in sorted(faults.items())), len(lost_after_write),
               duplicates, len(mismatches), len(batch.not_done())))
    assert_ok(runs[-1])
    assert batch.not_done() == []
    assert duplicates == 0 and mismatches == []
    assert len(batch.api.users()) == 20
    # The faults did happen, of every kind, and some failed devices so that a re-run was needed.
    assert set(faults) == {'drop before', 'drop after', 'status 500', 'status 502', 'status 503'}, faults
    assert lost_after_write, 'no write was applied with its reply lost'
    assert len(runs) > 1
    for run in runs:
        assert not any(text in run.stdout + run.stderr for text in ('Traceback', 'Errno'))


def test_api_down_refuses_the_batch_up_front_then_failing_writes_fail_each_device_cleanly_and_a_rerun_converges(
        make_batch, figures):
    batch = make_batch(4, extra_vars={'identity_api_retries': 1})
    serials = sorted(batch.serials.values())

    # Down from the start: the station's check refuses the batch before anything is written.
    batch.api.stop()
    down = batch.run()
    assert down.returncode != 0
    assert 'the admin API does not answer from this station' in down.stdout, down.stdout[-3000:]
    assert 'Traceback' not in down.stdout + down.stderr
    assert not os.path.exists(batch.lab.workdir)  # nothing written
    assert batch.api.request_log() == []
    batch.api.start()

    # Up for the check, then every write fails: dropped before the server acts.
    batch.api.set_faults([{'method': 'POST', 'drop': 'before'}, {'method': 'PATCH', 'drop': 'before'}])
    writes_down = batch.run()
    errors = device_errors(writes_down, serials)
    figures('writes failing after the check: rc=%d, %d of %d devices failed, each naming itself; first error: %s'
            % (writes_down.returncode, sum(1 for error in errors.values() if error), len(serials), errors[serials[0]]))
    assert writes_down.returncode != 0
    for serial, error in errors.items():
        assert error is not None and error.startswith(serial + ': identity failed'), (serial, error)
        assert 'check the network and the admin API' in error, error  # what to do
        assert not any(text in error for text in RAW_EXCEPTION_TEXT), error
    assert 'Traceback' not in writes_down.stdout + writes_down.stderr
    assert batch.api.users() == {}
    # (A batch whose every device failed writes no report yet: each device's state says it.)
    assert [batch.phases(serial) for serial in serials] == [{'rootfs': 'done', 'identity': 'failed'}] * len(serials)

    batch.api.set_faults([])
    assert_ok(batch.run())
    assert batch.not_done() == [] and batch.password_mismatches() == [] and batch.duplicate_accounts() == 0


def test_a_401_on_the_4th_write_names_the_token_and_leaves_the_devices_not_reached_untouched(make_batch, figures):
    # One device at a time, so that "not reached" is well defined.
    batch = make_batch(7, extra_vars={'identity_parallel': 1})
    serials = sorted(batch.serials.values())
    ports = dict((serial, port) for port, serial in batch.serials.items())
    # The token stops working from the 4th write on (revoked mid-batch).
    batch.api.set_faults([{'method': 'POST', 'status': 401, 'skip': 3}])
    result = batch.run()
    errors = device_errors(result, serials)
    untouched = [serial for serial in serials[4:]
                 if not os.path.exists(os.path.join(batch.tree(ports[serial]), 'rootfs', 'etc', 'azaion', 'device.conf'))]
    figures('401 on the 4th write, 7 devices: %d done, %d refused, %d not reached and untouched; %d writes sent; '
            'error: %s' % (len(serials) - len(batch.not_done()), 1, len(untouched), batch.api.write_count(),
                           errors[serials[3]]))
    assert result.returncode != 0
    assert batch.not_done() == serials[3:]
    assert 'AZAION_ADMIN_API_TOKEN' in errors[serials[3]] and 'HTTP 401' in errors[serials[3]], errors[serials[3]]
    for serial in serials[4:]:
        assert 'not attempted, nothing changed' in errors[serial] and 'AZAION_ADMIN_API_TOKEN' in errors[serial], errors
    assert untouched == serials[4:]
    assert batch.api.write_count() == 4
    assert sorted(batch.api.users()) == [batch.email(serial) for serial in serials[:3]]
    assert 'Traceback' not in result.stdout + result.stderr

    batch.api.set_faults([])  # a good token again
    assert_ok(batch.run())
    assert batch.not_done() == [] and batch.password_mismatches() == [] and batch.duplicate_accounts() == 0
