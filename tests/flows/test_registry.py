"""The promotion gate's rules, the registry's `current` pointer, and new-audio detection by content
hash (files that pass the quick check against their scan are not hashed again)."""
import os

import pytest

from dmospeech.config import GateRule, PrepareCorpusConfig, SourceConfig, SplitConfig
from dmospeech.data.changes import source_changes
from dmospeech.data.ingest import scan_db_path, scan_rows
from dmospeech.data.manifest import Lineage, write_stage_db
from dmospeech.lineage.registry import Registry, RegistryError, apply_gate
from tests.helpers import voiced, write

RULES = (GateRule("student.wer", "lower", 0.01), GateRule("student.sim", "higher", 0.02))
CURRENT = {"model_id": "student-1", "metrics": {"student.wer": 0.10, "student.sim": 0.80}}


def test_gate_tolerances_and_reasons():
    within = apply_gate({"student": {"wer": 0.109, "sim": 0.781}}, "m.json", RULES, CURRENT)
    assert within.passed and within.compared_to == "student-1"
    worse = apply_gate({"student": {"wer": 0.105, "sim": 0.75}}, "m.json", RULES, CURRENT)
    assert not worse.passed and worse.reason == "student.sim 0.75 < current 0.8 - tolerance 0.02"
    first = apply_gate({"student": {"wer": 0.5, "sim": 0.1}}, "m.json", RULES, None)
    assert first.passed and first.values == {"student.wer": 0.5, "student.sim": 0.1}
    changed = apply_gate({"student": {"wer": 0.1, "sim": 0.8}}, "m.json", RULES,
                         {"model_id": "old", "metrics": {"student.wer": 0.1}})
    assert not changed.passed and "old has no recorded student.sim" in changed.reason
    with pytest.raises(KeyError, match=r"'student.sim' is not in m.json \(at 'sim': found \['wer'\]\)"):
        apply_gate({"student": {"wer": 0.1}}, "m.json", RULES, CURRENT)


def test_promote_moves_current_and_refuses_unknown_models(tmp_path):
    registry = Registry(tmp_path)
    for model_id in ("a", "b"):
        (registry.models_dir / model_id).mkdir(parents=True)
    registry.file.write_text('{"model_id": "a"}\n{"model_id": "b"}\n')
    registry.promote("a")
    registry.promote("b")
    assert registry.current_id() == "b" and os.readlink(registry.current_link) == "models/b"
    with pytest.raises(RegistryError, match="no model 'c'"):
        registry.promote("c")
    assert registry.current_id() == "b"


def test_source_changes_by_content_hash(tmp_path):
    for i in range(3):
        write(tmp_path / "src" / "spk" / f"{i}.wav", voiced(0.3, seed=i))
        (tmp_path / "src" / "spk" / f"{i}.txt").write_text("hi")
    cfg = PrepareCorpusConfig((SourceConfig("s", "sidecar", "src"),), "manifests/source_files.duckdb",
                              SplitConfig(), (".wav",))
    before = source_changes(cfg, tmp_path)
    assert (len(before.added), before.hashed) == (3, 3)
    rows = scan_rows(cfg.sources[0], cfg.audio_extensions, Lineage.for_stage("scan_source", {}), tmp_path)
    write_stage_db(tmp_path / scan_db_path(cfg.manifest, "s"), {"scanned_files": rows})
    unchanged = source_changes(cfg, tmp_path)
    assert not unchanged.changed and (unchanged.unchanged, unchanged.hashed) == (3, 0)
    write(tmp_path / "src" / "spk" / "0.wav", voiced(0.3, seed=99))  # same name and size, new content
    write(tmp_path / "src" / "spk" / "3.wav", voiced(0.3, seed=3))
    (tmp_path / "src" / "spk" / "2.wav").unlink()
    changes = source_changes(cfg, tmp_path)
    src = tmp_path.resolve() / "src" / "spk"
    assert changes.added == (str(src / "0.wav"), str(src / "3.wav"))
    assert changes.removed == (str(src / "0.wav"), str(src / "2.wav")) and changes.hashed == 2
    assert changes.fingerprint != unchanged.fingerprint
    later = PrepareCorpusConfig(cfg.sources + (SourceConfig("later", "sidecar", "made/by/a/stage"),), cfg.manifest,
                                SplitConfig(), (".wav",))
    pending = source_changes(later, tmp_path)
    assert pending.missing == ("later",) and pending.changed and pending.fingerprint == changes.fingerprint
