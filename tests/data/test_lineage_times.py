"""Lineage times across reruns: a row keeps the `created_at` of the run that first produced it (and its
`updated_at` while its content is unchanged); the manifests are persistent DVC outputs so a rerun sees them."""
import datetime as dt

import duckdb
import pandas as pd
import yaml

from dmospeech.data.manifest import Lineage, frame, read_table, write_stage_db
from tests.helpers import PROJECT_ROOT

DAY1, DAY2 = dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 2)


def source_file(file_id: str, speaker: str, when: dt.datetime, code: str = "v1") -> dict:
    return {"file_id": file_id, "source_name": "s", "source_kind": "sidecar", "path": f"/c/{file_id}.wav",
            "rel_path": f"{file_id}.wav", "size_bytes": 10, "speaker": speaker, "text": "words", "transcribed": True,
            "split": "train", "source_sha256": file_id * 4, "parent_id": None,
            **Lineage("prepare_corpus", f"params-{code}", code, when).columns()}


def quarantined(path: str, detail: str, when: dt.datetime) -> dict:
    return {"item_id": path[-16:], "item_kind": "source_file", "path": path, "reason": "duplicate", "detail": detail,
            "source_sha256": None, "parent_id": None, **Lineage("prepare_corpus", "0123456789ab", "v1", when).columns()}


def times(db, table: str, key: str) -> dict[str, tuple]:
    rows = read_table(db, table)
    return {row[key]: (row.created_at, row.updated_at) for _, row in rows.iterrows()}


def test_a_rerun_keeps_when_each_row_was_first_produced(tmp_path):
    db = tmp_path / "source_files.duckdb"
    write_stage_db(db, {"source_files": frame("source_files", [source_file("a" * 16, "x", DAY1),
                                                               source_file("b" * 16, "x", DAY1)]),
                        "quarantine": frame("quarantine", [quarantined("/c/same.wav", "d", DAY1),
                                                           quarantined("/c/changed.wav", "d", DAY1)])})
    write_stage_db(db, {"source_files": frame("source_files", [
        source_file("a" * 16, "x", DAY2, code="v2"),     # reproduced by new code and params: unchanged
        source_file("b" * 16, "y", DAY2),                # same file, new content
        source_file("c" * 16, "x", DAY2)]),              # new
        "quarantine": frame("quarantine", [quarantined("/c/same.wav", "d", DAY2),
                                           quarantined("/c/changed.wav", "e", DAY2)])})
    assert times(db, "source_files", "file_id") == {"a" * 16: (DAY1, DAY1), "b" * 16: (DAY1, DAY2),
                                                   "c" * 16: (DAY2, DAY2)}
    assert read_table(db, "source_files").params_hash.tolist() == ["params-v2", "params-v1", "params-v1"]
    assert times(db, "quarantine", "path") == {"/c/same.wav": (DAY1, DAY1), "/c/changed.wav": (DAY2, DAY2)}


def test_a_database_written_before_updated_at_existed(tmp_path):
    db = tmp_path / "source_files.duckdb"
    old = pd.DataFrame([source_file("a" * 16, "x", DAY1)]).drop(columns="updated_at")
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE source_files AS SELECT * FROM old")
    write_stage_db(db, {"source_files": frame("source_files", [source_file("a" * 16, "x", DAY2)])})
    assert times(db, "source_files", "file_id") == {"a" * 16: (DAY1, DAY1)}


def test_every_manifest_is_a_persistent_dvc_output():
    """DVC deletes a stage's outputs before running it unless they persist; then no earlier time is left."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    manifests = {}
    for stage in stages.values():
        for out in stage.get("do", stage).get("outs", []):
            path, flags = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if path.endswith(".manifest}") or path.endswith(".duckdb"):
                manifests[path] = flags.get("persist", False)
    assert len(manifests) == 7 and all(manifests.values()), manifests   # 6 data stages + encode_latents
