"""Object-storage options from the environment: parsed to strings, and a secret never echoed back in
an error about them."""

from __future__ import annotations

import json
import uuid

import pytest

from kinetics_assets.settings import SettingsError, storage_options_from_env

# A value that must never show up in an error.
SECRET = "s3cr3t-" + uuid.uuid4().hex


def test_storage_options_from_env_never_echo_the_value():
    assert storage_options_from_env({}) is None
    parsed = storage_options_from_env({"KINETICS_STORAGE_OPTIONS": json.dumps({"allow_http": True, "timeout": 30})})
    assert parsed == {"allow_http": "true", "timeout": "30"}
    with pytest.raises(SettingsError, match="KINETICS_STORAGE_OPTIONS") as failure:
        storage_options_from_env({"KINETICS_STORAGE_OPTIONS": '{"aws_secret_access_key": "' + SECRET})
    assert SECRET not in str(failure.value)
    with pytest.raises(SettingsError, match="JSON object"):
        storage_options_from_env({"KINETICS_STORAGE_OPTIONS": '["a"]'})
