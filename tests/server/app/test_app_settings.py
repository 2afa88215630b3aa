"""ServerSettings: precedence flags > environment > TOML > defaults, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curator.errors import InvalidInputError
from curator.index import FaissIndex
from server.app.services import ServerServices
from server.settings import ServerSettings, load_settings


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings({}, None, {})
    assert s.data_dir == Path("curator-data")
    assert (s.host, s.port, s.warehouse, s.log_format) == ("127.0.0.1", 8000, "sqlite", "json")
    assert (s.dedup_threshold, s.dedup_index) == (0.95, "hnsw")
    assert s.blob_url is None and s.blob_location == str(Path("curator-data") / "blobs")
    assert s.catalog_path == Path("curator-data") / "catalog.sqlite"


def test_each_source_overrides_the_one_below(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'port = 9001\nhost = "0.0.0.0"\nlog_level = "DEBUG"\n')
    env = {"CURATOR_SERVER_PORT": "9002", "CURATOR_SERVER_HOST": "10.0.0.1"}
    assert load_settings({}, toml, {}).port == 9001  # TOML > defaults
    from_env = load_settings({}, toml, env)
    assert (from_env.port, from_env.host, from_env.log_level) == (9002, "10.0.0.1", "DEBUG")
    flags = load_settings({"port": "9003", "host": None}, toml, env)  # None: flag not given
    assert (flags.port, flags.host, flags.log_level) == (9003, "10.0.0.1", "DEBUG")


def test_the_training_recipe_comes_from_the_environment_or_toml(tmp_path: Path) -> None:
    assert load_settings({}, None, {}).fine_tune_params == {"epochs": 5, "min_samples": 0}
    toml = write_toml(tmp_path, "train_epochs = 3\ntrain_min_samples = 0\n")
    assert load_settings({}, toml, {}).fine_tune_params == {"epochs": 3, "min_samples": 0}
    env = {"CURATOR_SERVER_TRAIN_MIN_SAMPLES": "5000"}
    assert load_settings({}, toml, env).fine_tune_params == {"epochs": 3, "min_samples": 5000}
    with pytest.raises(InvalidInputError, match="train_epochs"):
        load_settings({}, None, {"CURATOR_SERVER_TRAIN_EPOCHS": "0"})


def test_nested_snowflake_fields_merge_across_sources(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path, '[snowflake]\naccount = "toml-acc"\npassword = "s3cret-pw"\nschema = "RAW"\n'
    )
    env = {"CURATOR_SERVER_SNOWFLAKE__ACCOUNT": "env-acc", "CURATOR_SERVER_WAREHOUSE": "snowflake"}
    s = load_settings({"snowflake": {"user": "flag-user", "port": "8123"}}, toml, env)
    sf = s.snowflake
    assert (s.warehouse, sf.account, sf.user, sf.schema_, sf.port) == (
        "snowflake",
        "env-acc",
        "flag-user",
        "RAW",
        8123,
    )
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in str(s.model_dump())
    assert sf.connect_args()["password"] == "s3cret-pw"


def test_config_path_from_environment(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "max_pixels = 1234\n")
    assert load_settings({}, None, {"CURATOR_SERVER_CONFIG": str(toml)}).max_pixels == 1234


def test_env_mapping_is_the_only_environment_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATOR_SERVER_PORT", "1111")
    assert load_settings({}, None, {}).port == 8000
    assert load_settings({}, None, None).port == 1111  # None: the process environment


@pytest.mark.parametrize(
    ("flags", "env", "field"),
    [
        ({"port": "eighty"}, {}, "port"),
        ({"port": 70000}, {}, "port"),
        ({}, {"CURATOR_SERVER_DEDUP_THRESHOLD": "1.5"}, "dedup_threshold"),
        ({}, {"CURATOR_SERVER_WAREHOUSE": "postgres"}, "warehouse"),
        ({}, {"CURATOR_SERVER_DEDUP_INDEX": "ivf"}, "dedup_index"),
        ({}, {"CURATOR_SERVER_LOG_FORMAT": "xml"}, "log_format"),
        ({"max_body_mb": 0}, {}, "max_body_mb"),
        ({"snowflake": {"protocol": "ftp"}}, {}, "snowflake.protocol"),
    ],
)
def test_bad_values_name_the_field_in_one_line(
    flags: dict[str, object], env: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_settings(flags, None, env)
    message = str(info.value)
    assert f"'{field}'" in message and "\n" not in message


def test_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="'bogus'"):
        load_settings({}, write_toml(tmp_path, "bogus = 1\n"), {})
    with pytest.raises(InvalidInputError, match="cannot read config file"):
        load_settings({}, write_toml(tmp_path, "port = \n"), {})
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_settings({}, tmp_path / "missing.toml", {})


def test_password_never_in_errors() -> None:
    with pytest.raises(InvalidInputError) as info:
        load_settings({"snowflake": {"password": 12345678}}, None, {})
    assert "12345678" not in str(info.value)


def test_settings_are_frozen() -> None:
    s = load_settings({}, None, {})
    assert isinstance(s, ServerSettings)
    with pytest.raises(ValueError, match="frozen"):
        s.port = 1  # type: ignore[misc]


def test_the_dedup_index_setting_picks_the_structure_of_a_new_model_version(
    tmp_path: Path,
) -> None:
    for kind, structure in (("flat", "flat"), ("hnsw", "hnsw")):
        settings = load_settings({"data_dir": tmp_path / kind, "dedup_index": kind}, None, {})
        services = ServerServices.open(settings)
        try:
            services.ingest.dedup.accept("m1", [1], np.ones((1, 4), np.float32))
            index = services.ingest.dedup._space("m1").index
            assert isinstance(index, FaissIndex) and index.structure == structure
        finally:
            services.close()
