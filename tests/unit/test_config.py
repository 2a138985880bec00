"""Strict, typed params: unknown, missing and mistyped keys are errors naming the key."""
import pytest
import yaml

from dmospeech.config import ConfigError, load_params
from tests.helpers import PROJECT_ROOT


def write_params(tmp_path, mutate):
    data = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_params_load_and_are_frozen():
    p = load_params(PROJECT_ROOT / "params.yaml")
    assert p.resample_audio.sample_rate == 48000 and p.segment_audio.max_segment_s == 30.0
    with pytest.raises(AttributeError):
        p.resample_audio.sample_rate = 16000


def test_unknown_key_is_named(tmp_path):
    path = write_params(tmp_path, lambda d: d["segment_audio"].update(max_segment_sec=20))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) segment_audio.max_segment_sec"):
        load_params(path)


def test_mistyped_value_is_named(tmp_path):
    path = write_params(tmp_path, lambda d: d["resample_audio"].update(sample_rate="48k"))
    with pytest.raises(ConfigError, match="resample_audio.sample_rate: expected an integer"):
        load_params(path)


def test_bad_literal_and_nested_keys(tmp_path):
    path = write_params(tmp_path, lambda d: d["resample_audio"].update(normalize="rms"))
    with pytest.raises(ConfigError, match="resample_audio.normalize: 'rms' is not one of"):
        load_params(path)
    path = write_params(tmp_path, lambda d: d["prepare_corpus"]["sources"][0].update(kind="mp3dir"))
    with pytest.raises(ConfigError, match=r"prepare_corpus.sources\[0\].kind"):
        load_params(path)


def test_missing_key_is_named(tmp_path):
    path = write_params(tmp_path, lambda d: d["segment_audio"].pop("language"))
    with pytest.raises(ConfigError, match="missing key segment_audio.language"):
        load_params(path)


def test_every_profile_loads():
    for profile in sorted((PROJECT_ROOT / "profiles").glob("*.yaml")):
        assert load_params(PROJECT_ROOT / "params.yaml", profile=profile)
