"""A job as AWX would lay it out for ansible-runner: the private data directory, with a custom
credential injected the way AWX does it, and the job template's launch settings.

The injection follows AWX's CredentialType.inject_credential (awx/main/models/credential): the
inputs that are given and not empty form the template namespace; each ``file`` template is
rendered with Jinja2's ImmutableSandboxedEnvironment into a file of its own under ``env/``
(mkstemp, mode 0660), whose path goes into ``tower.filename.<name>`` (``tower.filename`` for a
lone ``template``); then each ``env`` template is rendered with that namespace. AWX refuses
``ANSIBLE_*`` and a block list of variable names in ``env``, and checks at import time that the
templates use only defined inputs (StrictUndefined): ``check_credential_type`` does the same.
"""

import json
import os
import re
import stat
import tempfile

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX_DIR = os.path.join(REPO_ROOT, 'extensions', 'awx')
CREDENTIAL_TYPE = os.path.join(AWX_DIR, 'credential-type.yml')
JOB_TEMPLATE = os.path.join(AWX_DIR, 'job-template.yml')
EXECUTION_ENVIRONMENT = os.path.join(AWX_DIR, 'execution-environment.yml')

FILE_LABEL = re.compile(r'^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$')  # AWX's injector schema
ENV_NAME = re.compile(r'^[a-zA-Z_]+[a-zA-Z0-9_]*$')


def load_yaml(path):
    with open(path) as document:
        return yaml.safe_load(document)


class _Namespace:
    """Attributes for the templates (``tower.filename.token``), as AWX's TowerNamespace."""


def check_credential_type(credential_type):
    """The problems AWX would refuse the credential type for (a list of strings)."""
    problems = []
    fields = [field['id'] for field in credential_type['inputs']['fields']]
    injectors = credential_type['injectors']
    labels = list(injectors.get('file', {}))
    problems += ['file injector %s is not template or template.<name>' % label
                 for label in labels if not FILE_LABEL.match(label)]
    if 'template' in labels and len(labels) > 1:
        problems.append('a lone "template" and named templates at once')
    for name in injectors.get('env', {}):
        if not ENV_NAME.match(name) or name.startswith('ANSIBLE_'):
            problems.append('environment variable %s is refused by AWX' % name)
    namespace = dict((field, 'EXAMPLE') for field in fields)
    namespace['tower'] = _Namespace()
    namespace['tower'].filename = _Namespace()
    for label in labels:
        setattr(namespace['tower'].filename, label.partition('.')[2], 'EXAMPLE_FILENAME')
    strict = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind in ('file', 'env', 'extra_vars'):
        for key, template in injectors.get(kind, {}).items():
            try:
                strict.from_string(template).render(namespace)
            except Exception as error:  # pylint: disable=broad-except
                problems.append('%s %s: %s' % (kind, key, error))
    return problems


def inject_credential(credential_type, inputs, private_data_dir):
    """Write the credential's files into ``private_data_dir``/env as AWX does; return (the job's
    environment variables from the credential, {label: path of its file})."""
    namespace = dict((name, value) for name, value in inputs.items() if value not in ('', None))
    namespace['tower'] = _Namespace()
    sandbox = ImmutableSandboxedEnvironment()
    env_dir = os.path.join(private_data_dir, 'env')
    os.makedirs(env_dir, exist_ok=True)
    files = {}
    for label, template in credential_type['injectors'].get('file', {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, 'w') as written:
            written.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
        files[label] = path
        if '.' in label:
            if not hasattr(namespace['tower'], 'filename'):
                namespace['tower'].filename = _Namespace()
            setattr(namespace['tower'].filename, label.split('.')[1], path)
        else:
            namespace['tower'].filename = path
    env = dict((name, sandbox.from_string(template).render(**namespace))
               for name, template in credential_type['injectors'].get('env', {}).items())
    return env, files


def survey_answers(survey_spec, answers):
    """Extra variables from a survey: each question's answer, else its default."""
    extra_vars = {}
    for question in survey_spec['spec']:
        value = answers.get(question['variable'], question.get('default', ''))
        if question['required'] and value in ('', None):
            raise ValueError('the survey needs an answer for %s' % question['variable'])
        extra_vars[question['variable']] = value
    return extra_vars


def write_private_data_dir(private_data_dir, job_template, inventory, extra_vars, envvars, cmdline):
    """Lay out an AWX-like private data directory: project/ with the job template's playbook,
    inventory/hosts.json, env/extravars, env/envvars, env/cmdline, env/settings."""
    for name in ('project', 'inventory', 'env'):
        os.makedirs(os.path.join(private_data_dir, name), exist_ok=True)
    documents = {
        os.path.join('project', job_template['job_template']['playbook']): job_template['project_playbook'],
        'inventory/hosts.json': inventory,
        'env/extravars': extra_vars,
        'env/envvars': envvars,
        'env/settings': {'suppress_ansible_output': True},
    }
    for relative, content in documents.items():
        with open(os.path.join(private_data_dir, relative), 'w') as document:
            json.dump(content, document, indent=2)
    with open(os.path.join(private_data_dir, 'env', 'cmdline'), 'w') as document:
        document.write(cmdline)
