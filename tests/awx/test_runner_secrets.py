"""The provision playbook under ansible-runner, from an AWX-like private data directory, with the
admin API credential injected the way the AWX credential type (extensions/awx) injects it: no
secret may reach anything the job leaves behind (artifacts, job events, the private data
directory, the station's files)."""

import glob
import os
import secrets
import sys

import ansible_runner
import pytest

from lab import labkit
from lab.admin_api import LabAdminAPI

import awx_jobs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'integration'))
from sweep import everything_written_under  # noqa: E402  pylint: disable=wrong-import-position

PORTS = {'1-1': '7523', '1-2': '7323'}
SERIALS = {'1-1': 'AZJN-0001', '1-2': 'AZJN-0002'}
BATCH_NAME = 'awx-wave1'


class AWXJob:
    """A lab station with two Jetsons, and one AWX job over it, run by ansible-runner."""

    def __init__(self, root, api, token, credential_way):
        self.api = api
        self.token = token
        self.default_user_password = secrets.token_hex(12)
        self.lab = labkit.FactoryLab(os.path.join(root, 'lab'), PORTS)
        self.lab.start_loaders(api.url)
        self.private_data_dir = os.path.join(root, 'job')
        os.makedirs(self.private_data_dir)
        self.credential_files = {}
        credential_type = awx_jobs.load_yaml(awx_jobs.CREDENTIAL_TYPE)
        if credential_way == 'files':
            # As an operator fills the credential in: plain HTTP here, so the mTLS inputs stay
            # empty, and AWX still writes an (empty) file for each.
            credential_env, self.credential_files = awx_jobs.inject_credential(credential_type, {
                'url': api.url, 'token': token, 'client_cert': '', 'client_key': '', 'ca_bundle': '',
                'default_user_password': self.default_user_password}, self.private_data_dir)
        else:
            # The old way, before the *_FILE variables: the secrets themselves in the environment.
            credential_env = {'AZAION_ADMIN_API_URL': api.url, 'AZAION_ADMIN_API_TOKEN': token}
        template = awx_jobs.load_yaml(awx_jobs.JOB_TEMPLATE)
        extra_vars = awx_jobs.survey_answers(template['survey_spec'], {'jetson_batch_name': BATCH_NAME})
        if credential_way != 'files':
            # Nowhere else to put it then: an extra variable, as a vault would have given it.
            extra_vars['jetson_default_user_password'] = self.default_user_password
        group_vars = dict(self.lab.group_vars(), identity_api_retry_backoff=0.05)
        host_vars = dict((serial, self.lab.host_vars(port)) for port, serial in SERIALS.items())
        inventory = {'jetsons': {'hosts': host_vars, 'vars': group_vars}}
        envvars = dict(credential_env)
        envvars.update({
            # What the EE has: the collection installed, ansible-playbook on the PATH.
            'ANSIBLE_COLLECTIONS_PATH': labkit.link_collection(),
            'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''),
            'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
            # Everything a job event can carry: each task's arguments, at the highest verbosity.
            'ANSIBLE_DISPLAY_ARGS_TO_STDOUT': 'True',
        })
        # The job template's launch options as AWX passes them to ansible-playbook; for the
        # secret search, verbosity 4 and diff mode: all that a job could ever print.
        cmdline = '--forks %d' % template['job_template']['forks']
        if credential_way == 'files':
            cmdline += ' -vvvv --diff'
        awx_jobs.write_private_data_dir(self.private_data_dir, template, inventory, extra_vars,
                                        envvars, cmdline)

    def run_successfully(self):
        result = ansible_runner.run(private_data_dir=self.private_data_dir, playbook='provision.yml', ident='1',
                                    process_isolation=False, quiet=True)
        with open(os.path.join(self.private_data_dir, 'artifacts', '1', 'stdout')) as stdout:
            assert (result.status, result.rc) == ('successful', 0), stdout.read()[-4000:]

    def device_passwords(self):
        return sorted(user['password'] for user in self.api.users().values())

    def assert_provisioned(self):
        users = self.api.users()
        for port, serial in SERIALS.items():
            conf = labkit.read_device_conf(self.lab.storage(port))
            email = 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]
            assert conf['AZAION_DEVICE_EMAIL'] == email, port
            assert users[email]['password'] == conf['AZAION_DEVICE_PASSWORD'], port
        # The survey's batch name reached the playbook: the report is named after it.
        assert os.path.exists(os.path.join(self.lab.workdir, 'reports', BATCH_NAME + '.json'))

    def artifacts(self):
        return list(everything_written_under(os.path.join(self.private_data_dir, 'artifacts'), skip_names=()))

    def job_files_but_the_credential_files(self):
        """Everything in the private data directory (artifacts, env/, project, inventory) save the
        files the credential wrote its secrets into."""
        own = set(self.credential_files.values())
        return [(path, text) for path, text in everything_written_under(self.private_data_dir, skip_names=())
                if path not in own]


@pytest.fixture
def make_job(tmp_path):
    token = secrets.token_hex(16)
    jobs = []

    def make(credential_way):
        api = LabAdminAPI(token=token).__enter__()
        job = AWXJob(str(tmp_path), api, token, credential_way)
        jobs.append(job)
        return job
    yield make
    for job in jobs:
        job.lab.stop_loaders()
        job.api.__exit__(None, None, None)


def leaks(haystacks, secret):
    return [path for path, text in haystacks if secret.encode() in text]


def test_a_job_with_the_credential_as_files_provisions_and_leaves_no_secret_behind(make_job):
    job = make_job('files')
    job.run_successfully()
    job.assert_provisioned()

    # The search must see what it searches: the command with its environment, the job events
    # with their task arguments, the output.
    artifacts = job.artifacts()
    names = [os.path.relpath(path, job.private_data_dir) for path, _text in artifacts]
    assert 'artifacts/1/command' in names and 'artifacts/1/stdout' in names
    assert len(glob.glob(os.path.join(job.private_data_dir, 'artifacts', '1', 'job_events', '*.json'))) > 50
    command = dict(artifacts)[os.path.join(job.private_data_dir, 'artifacts', '1', 'command')]
    assert b'AZAION_ADMIN_API_TOKEN_FILE' in command and b'AZAION_DEFAULT_USER_PASSWORD_FILE' in command
    assert b'"task_args"' in b''.join(text for _path, text in artifacts)
    # The credential's files are the only ones with the token and the default user's password.
    with open(job.credential_files['template.token']) as token_file:
        assert token_file.read() == job.token

    haystacks = job.job_files_but_the_credential_files()
    haystacks += list(everything_written_under(job.lab.root, skip_names=('device.conf', 'system.img')))
    passwords = job.device_passwords()
    assert len(passwords) == 2
    for secret in [job.token, job.default_user_password] + passwords:
        assert leaks(haystacks, secret) == []


def test_a_job_with_the_token_in_its_environment_leaves_it_in_the_runner_command_artifact(make_job):
    # Why the credential type uses files: ansible-runner writes the job's whole environment into
    # artifacts/<job>/command, which AWX keeps. This also shows that the search above can fail.
    job = make_job('environment')
    job.run_successfully()
    job.assert_provisioned()
    found = leaks(job.artifacts(), job.token)
    assert os.path.join(job.private_data_dir, 'artifacts', '1', 'command') in found
