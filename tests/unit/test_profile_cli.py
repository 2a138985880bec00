"""`dmospeech profile NAME` merges the profile into params.yaml as data (what `load_params(profile=...)`
reads) while keeping params.yaml's comments next to their keys (ruamel.yaml round trip)."""
import re
import shutil

import pytest
from ruamel.yaml import YAML

from dmospeech.cli import main
from dmospeech.config.profiles import merge_round_trip
from dmospeech.config import deep_merge, load_params, read_yaml
from tests.helpers import PROJECT_ROOT

KNOWN_COMMENTS = ("# Tiny CPU profile of the DiT teacher (appendix C.2.3); profiles/paper.yaml holds Table 9.",
                  "# dmospeech parameters: the demo / tiny profile (runs on a 2-core CPU).",
                  "# Tiny CPU profile of the DAC-VAE (appendix C.1); profiles/paper.yaml holds DAC's widths.")


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(PROJECT_ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def comment_before_key(text: str) -> dict[str, str]:
    """Each full-line comment -> the first key after it."""
    lines, out = text.splitlines(), {}
    for i, line in enumerate(lines):
        if line.strip().startswith("#"):
            out[line.strip()] = next((m.group(1) for m in (re.match(r"\s*(?:- )?([\w\"/]+):", x) for x in lines[i + 1:])
                                      if m), None)
    return out


@pytest.mark.parametrize("name", ["paper", "dev"])
def test_profile_merges_as_data_and_keeps_comments(project, name):
    params = project / "params.yaml"
    original = params.read_text()
    expected = deep_merge(read_yaml(params), read_yaml(project / "profiles" / f"{name}.yaml"))
    assert main(["--params", str(params), "profile", name]) == 0
    text = params.read_text()
    assert load_params(params)                                  # (a) valid params
    assert read_yaml(params) == expected                        # (b) the deep merge, as data
    assert text.startswith(f"# params.yaml with profile profiles/{name}.yaml applied by `dmospeech profile`\n")
    for comment in KNOWN_COMMENTS:                              # (c) comments of params.yaml stay ...
        assert comment in text
    before, after = comment_before_key(original), comment_before_key(text)
    assert {c: after.get(c) for c in before} == before          # ... each above the same key
    assert "  alignment_model: null" in text and "valid_sampler: {steps: 128, cfg_scale: 2.0}" in text
    assert not list(project.glob(".params.yaml.tmp*")) and not (project / "params.yaml.tmp").exists()


def test_applying_twice_changes_nothing_more(project):
    params = project / "params.yaml"
    assert main(["--params", str(params), "profile", "paper"]) == 0
    once = params.read_text()
    assert main(["--params", str(params), "profile", "paper"]) == 0
    assert params.read_text() == once


def test_unknown_profile_leaves_params_alone(project, capsys):
    params = project / "params.yaml"
    original = params.read_text()
    assert main(["--params", str(params), "profile", "nope"]) == 2
    assert "available: ['dev', 'paper', 'paper_smoke']" in capsys.readouterr().err and params.read_text() == original


def test_profiles_layer_in_order(project):
    """`profile paper paper_smoke`: the smoke's caps over the paper's widths, as applying them one by one."""
    params = project / "params.yaml"
    expected = deep_merge(deep_merge(read_yaml(params), read_yaml(project / "profiles" / "paper.yaml")),
                          read_yaml(project / "profiles" / "paper_smoke.yaml"))
    assert main(["--params", str(params), "profile", "paper", "paper_smoke"]) == 0
    assert read_yaml(params) == expected
    assert params.read_text().startswith("# params.yaml with profiles profiles/paper.yaml, profiles/paper_smoke.yaml "
                                         "applied by `dmospeech profile`\n")
    merged = load_params(params)
    assert merged.train_teacher.model.dim == 1024 and merged.train_teacher.loop.max_steps == 2   # paper width, capped
    assert merged.train_codec.model.decoder_dim == 1536 and merged.distill_student.loop.max_steps == 2


def test_round_trip_merge_moves_comments_with_their_keys():
    rt = YAML()
    base = rt.load("a:\n  # about lst\n  lst:\n    - 1\n    - 2\n  # about b\n  b: 3   # b inline\n  m:\n    x: 1\n"
                   "  # about c\n  c: {p: 1}\n# about top\ntop: 1\n")
    merge_round_trip(base, rt.load("a:\n  lst: [9]\n  m: 5\n  c: {q: 2}   # overlay\n  new: 7\n  # overlay tail\n"))
    from io import StringIO

    out = StringIO()
    rt.dump(base, out)
    assert out.getvalue() == ("a:\n  # about lst\n  lst: [9]\n  # about b\n  b: 3   # b inline\n  m: 5\n"
                              "  # about c\n  c: {p: 1, q: 2}\n  new: 7\n# about top\ntop: 1\n")
