"""The AWX assets (extensions/awx) hold together: a credential type AWX would take and that puts
no secret in the environment, a job template over the collection's playbook and variables, an
execution environment with the collection's own version."""

import copy
import os
import re

import pytest
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from packaging.specifiers import SpecifierSet

import awx_jobs

REPO_ROOT = awx_jobs.REPO_ROOT
# The collection's controller-side credential interface: environment variables only.
CREDENTIAL_VARIABLES = {'AZAION_ADMIN_API_URL', 'AZAION_ADMIN_API_TOKEN_FILE', 'AZAION_ADMIN_API_CLIENT_CERT_FILE',
                        'AZAION_ADMIN_API_CLIENT_KEY_FILE', 'AZAION_ADMIN_API_CA_FILE',
                        'AZAION_DEFAULT_USER_PASSWORD_FILE'}


@pytest.fixture
def credential_type():
    return awx_jobs.load_yaml(awx_jobs.CREDENTIAL_TYPE)


def referenced(template):
    return meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))


def test_awx_would_take_the_credential_type(credential_type):
    assert awx_jobs.check_credential_type(credential_type) == []
    assert credential_type['kind'] == 'cloud'  # the only kind, with net, that AWX lets one create


@pytest.mark.parametrize('breakage', ['ANSIBLE_ variable', 'undefined input', 'two file syntaxes'])
def test_the_credential_type_check_refuses_what_awx_refuses(credential_type, breakage):
    broken = copy.deepcopy(credential_type)
    if breakage == 'ANSIBLE_ variable':
        broken['injectors']['env']['ANSIBLE_AZAION_TOKEN_FILE'] = '{{ tower.filename.token }}'
    elif breakage == 'undefined input':
        broken['injectors']['env']['AZAION_ADMIN_API_URL'] = '{{ api_url }}'
    else:
        broken['injectors']['file']['template'] = '{{ token }}'
    assert len(awx_jobs.check_credential_type(broken)) == 1


def test_the_credential_type_puts_every_secret_in_a_file_and_only_paths_and_the_url_in_the_environment(
        credential_type):
    fields = dict((field['id'], field) for field in credential_type['inputs']['fields'])
    injectors = credential_type['injectors']
    assert set(injectors) == {'file', 'env'}  # no extra_vars: they land in the job's records
    assert set(injectors['env']) == CREDENTIAL_VARIABLES
    # Each env template names only the URL or a file; the URL is not secret.
    for name, template in injectors['env'].items():
        assert referenced(template) <= {'tower', 'url'}, name
    assert fields['url'].get('secret', False) is False
    # Every other input goes to a file of its own, and each file's variable names it.
    files = dict((label.split('.', 1)[1], referenced(template)) for label, template in injectors['file'].items())
    assert files == dict((field, {field}) for field in fields if field != 'url')
    named = [re.findall(r'tower\.filename\.(\w+)', template) for template in injectors['env'].values()]
    assert sorted(sum(named, [])) == sorted(files)
    assert {'token', 'client_key', 'default_user_password'} <= set(
        field for field, spec in fields.items() if spec.get('secret'))


def test_an_empty_input_still_gets_its_file_empty(credential_type, tmp_path):
    # What the collection relies on to take an empty file as not given.
    inputs = {'url': 'https://api.example.com', 'token': 'x' * 32, 'client_cert': ''}
    env, files = awx_jobs.inject_credential(credential_type, inputs, str(tmp_path))
    assert env['AZAION_ADMIN_API_URL'] == 'https://api.example.com'
    with open(env['AZAION_ADMIN_API_TOKEN_FILE']) as token_file:
        assert token_file.read() == 'x' * 32
    for name in ('AZAION_ADMIN_API_CLIENT_CERT_FILE', 'AZAION_ADMIN_API_CLIENT_KEY_FILE',
                 'AZAION_DEFAULT_USER_PASSWORD_FILE'):
        assert os.path.getsize(env[name]) == 0 and env[name] in files.values()
    assert all(oct(os.stat(path).st_mode & 0o777) == '0o660' for path in files.values())


def test_the_job_template_runs_the_collection_playbook_with_its_own_variables():
    template = awx_jobs.load_yaml(awx_jobs.JOB_TEMPLATE)
    job = template['job_template']
    assert job['playbook'] == 'provision.yml'
    assert template['project_playbook'] == [
        {'name': 'Provision a batch of Jetsons', 'ansible.builtin.import_playbook': 'azaion.jetson.provision'}]
    assert job['use_fact_cache'] is False
    assert job['ask_limit_on_launch'] and job['ask_tags_on_launch'] and job['ask_forks_on_launch']
    survey = dict((question['variable'], question) for question in template['survey_spec']['spec'])
    assert set(survey) == {'jetson_batch_name', 'identity_rotate'}
    # The survey's variables are the collection's: the playbook and the identity role read them.
    with open(os.path.join(REPO_ROOT, 'playbooks', 'provision.yml')) as playbook:
        assert 'jetson_batch_name' in playbook.read()
    with open(os.path.join(REPO_ROOT, 'roles', 'identity', 'meta', 'argument_specs.yml')) as specs:
        assert 'identity_rotate' in yaml.safe_load(specs)['argument_specs']['main']['options']
    assert set(template['schedule']['extra_data']) <= set(survey)
    assert template['schedule']['rrule'].startswith('DTSTART;TZID=')


def test_the_execution_environment_installs_this_version_of_the_collection_and_a_tested_ansible_core():
    definition = awx_jobs.load_yaml(awx_jobs.EXECUTION_ENVIRONMENT)
    galaxy = awx_jobs.load_yaml(os.path.join(REPO_ROOT, 'galaxy.yml'))
    assert definition['version'] == 3
    assert definition['dependencies']['galaxy']['collections'] == [
        {'name': '%s.%s' % (galaxy['namespace'], galaxy['name']), 'version': galaxy['version']}]
    with open(os.path.join(REPO_ROOT, 'tests', 'requirements.txt')) as requirements:
        pins = dict(line.strip().split('==') for line in requirements if '==' in line)
    core = definition['dependencies']['ansible_core']['package_pip']
    assert pins['ansible-core'] in SpecifierSet(core[len('ansible-core'):])
    runner = definition['dependencies']['ansible_runner']['package_pip']
    assert pins['ansible-runner'] in SpecifierSet(runner[len('ansible-runner'):])
