"""Which backend `get_backend()` gives: the one KEYS_BACKEND names, made once, made again when a setting changes."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from keys.backends import get_backend
from keys.backends.aws import AwsBackend
from keys.backends.local import LocalBackend


class NamedByPath(LocalBackend):
    """A backend that KEYS_BACKEND can only reach by its dotted path."""

    name = "named-by-path"


def test_it_gives_the_same_backend_every_time():
    assert get_backend() is get_backend()
    assert isinstance(get_backend(), LocalBackend)


def test_a_changed_backend_setting_gives_a_new_backend(settings):
    local = get_backend()

    settings.KEYS_BACKEND = "aws"

    assert isinstance(get_backend(), AwsBackend)
    assert get_backend() is get_backend()
    settings.KEYS_BACKEND = "local"
    assert get_backend() is not local  # made again, not an instance kept from before


def test_a_changed_region_gives_an_aws_backend_whose_client_is_in_it(settings):
    settings.KEYS_BACKEND = "aws"
    assert get_backend().client.meta.region_name == "ap-southeast-1"

    settings.AWS_DEFAULT_REGION = "eu-west-1"

    assert get_backend().client.meta.region_name == "eu-west-1"


def test_a_dotted_path_names_a_backend_class(settings):
    settings.KEYS_BACKEND = f"{__name__}.NamedByPath"
    assert type(get_backend()) is NamedByPath


def test_a_backend_that_cannot_be_imported_is_refused_with_the_setting_named(settings):
    settings.KEYS_BACKEND = "nowhere.Backend"

    with pytest.raises(ImproperlyConfigured, match="KEYS_BACKEND 'nowhere.Backend'"):
        get_backend()
    with pytest.raises(SystemCheckError, match=r"keys\.E001.*KEYS_BACKEND"):
        call_command("check")
