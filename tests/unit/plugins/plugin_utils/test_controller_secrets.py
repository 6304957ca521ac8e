"""Where a secret comes from on the controller: variables, the environment, and the files they name."""

import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import (
    ControllerSecretError,
    controller_secret,
)

VARIABLE, ENVIRONMENT = 'azaion_admin_api_token', 'AZAION_ADMIN_API_TOKEN'


@pytest.fixture
def no_environment(monkeypatch):
    for name in (ENVIRONMENT, ENVIRONMENT + '_FILE'):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def token_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_sources_are_taken_in_order_variable_its_file_environment_its_file(tmp_path, no_environment):
    variables = {VARIABLE: 'from-variable', VARIABLE + '_file': token_file(tmp_path, 'variable-file', 'from-variable-file\n')}
    no_environment.setenv(ENVIRONMENT, 'from-environment')
    no_environment.setenv(ENVIRONMENT + '_FILE', token_file(tmp_path, 'environment-file', ' from-environment-file \n'))
    seen = []
    for left_out in (None, VARIABLE, VARIABLE + '_file', ENVIRONMENT):
        if left_out in variables:
            del variables[left_out]
        elif left_out:
            no_environment.delenv(left_out)
        seen.append(controller_secret(variables, VARIABLE, ENVIRONMENT))
    assert seen == [('from-variable', VARIABLE), ('from-variable-file', VARIABLE + '_file'),
                    ('from-environment', ENVIRONMENT), ('from-environment-file', ENVIRONMENT + '_FILE')]
    no_environment.delenv(ENVIRONMENT + '_FILE')
    assert controller_secret(variables, VARIABLE, ENVIRONMENT) == (None, None)


def test_an_empty_file_counts_as_not_given_as_awx_writes_one_for_an_empty_input(tmp_path, no_environment):
    no_environment.setenv(ENVIRONMENT + '_FILE', token_file(tmp_path, 'empty', '\n'))
    assert controller_secret({}, VARIABLE, ENVIRONMENT) == (None, None)
    variables = {VARIABLE + '_file': token_file(tmp_path, 'blank', '  ')}
    no_environment.setenv(ENVIRONMENT, 'from-environment')
    assert controller_secret(variables, VARIABLE, ENVIRONMENT) == ('from-environment', ENVIRONMENT)


def test_an_unreadable_file_is_an_error_naming_the_variable_and_the_file(tmp_path, no_environment):
    missing = str(tmp_path / 'missing-token')
    no_environment.setenv(ENVIRONMENT + '_FILE', missing)
    with pytest.raises(ControllerSecretError) as caught:
        controller_secret({}, VARIABLE, ENVIRONMENT)
    assert str(caught.value).startswith('AZAION_ADMIN_API_TOKEN_FILE names the file %s, which cannot be read on the'
                                        ' controller (No such file or directory)' % missing)


def test_a_variable_is_templated_and_no_environment_variable_means_variables_only(tmp_path, no_environment):
    no_environment.setenv(ENVIRONMENT, 'not-read')
    path = token_file(tmp_path, 'password', 'from-file')
    variables = {'jetson_default_user_password_file': '{{ where }}'}
    assert controller_secret(variables, 'jetson_default_user_password',
                             template=lambda value: path if value == '{{ where }}' else value) == (
        'from-file', 'jetson_default_user_password_file')
    assert controller_secret({}, VARIABLE) == (None, None)
