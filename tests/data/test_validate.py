"""validate_manifest on a tiny fabricated corpus: a consistent one passes; each corruption fails with a
message naming the expectation and the offending row. GX is imported once (~15 s) for the module."""
from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import duckdb
import pytest
import yaml

from dmospeech.config import ValidateManifestConfig, deep_merge, read_yaml
from dmospeech.data.manifest import Lineage, frame, schema_statements, write_stage_db
from dmospeech.data.gate_report import write_report
from dmospeech.data.validate import ValidationReport, validate_manifests
from dmospeech.data.text import Vocabulary
from tests.helpers import PROJECT_ROOT, params

SAMPLE_RATE = 48000
VOCAB_PATH = PROJECT_ROOT / params().phonemize_text.vocab_path
VOCAB = Vocabulary.load(VOCAB_PATH)
IPA = "ðə bˈɜːtʃ kənˈuː"
FILE_A, FILE_B, FILE_C, FILE_D = "a" * 16, "b" * 16, "c" * 16, "d" * 16
STAGES = {"prepare_corpus": "source_files", "resample_audio": "audio",
          "segment_audio": "segments", "phonemize_text": "phonemes", "scan_source": "scanned_files"}
DB_NAMES = {"scan_source": "sources/demo.duckdb"}   # where stage validate_manifest finds source demo's scan
ORPHAN = "/corpus/orphan.txt"                        # a sidecar transcript without audio
Corpus = dict[str, list[dict[str, Any]]]   # table -> rows


def lineage(stage: str, sha: str, parent: str | None) -> dict[str, Any]:
    stamp = Lineage(stage, "0123456789ab", "test", dt.datetime(2025, 1, 1))
    return {"source_sha256": sha, "parent_id": parent, **stamp.columns()}


def source_file(file_id: str, speaker: str, split: str, text: str | None) -> dict[str, Any]:
    """A sidecar file with its transcript, or (text None) an untranscribed long-form file."""
    return {"file_id": file_id, "source_name": "demo", "source_kind": "sidecar" if text else "longform",
            "path": f"/corpus/{file_id}.wav", "rel_path": f"{file_id}.wav", "size_bytes": 1000, "speaker": speaker,
            "text": text, "transcribed": text is not None, "split": split,
            **lineage("prepare_corpus", file_id * 4, None)}


def audio(file_id: str, speaker: str, split: str, duration_s: float) -> dict[str, Any]:
    return {"file_id": file_id, "audio_path": f"data/audio48k/{file_id}.flac", "sample_rate": SAMPLE_RATE,
            "num_samples": int(duration_s * SAMPLE_RATE), "duration_s": duration_s, "orig_sample_rate": 16000,
            "orig_channels": 1, "orig_duration_s": duration_s, "peak": 0.5, "rms": 0.1, "clipped_fraction": 0.0,
            "dc_offset": 0.0, "gain_db": 5.0, "speaker": speaker, "split": split,
            **lineage("resample_audio", file_id * 4, file_id)}


def segment(file_id: str, index: int, start_s: float, end_s: float, speaker: str, split: str,
            text_source: str = "given") -> dict[str, Any]:
    return {"segment_id": f"{file_id}_{index:04d}", "file_id": file_id, "audio_path": f"data/audio48k/{file_id}.flac",
            "start_s": start_s, "end_s": end_s, "duration_s": end_s - start_s, "sample_rate": SAMPLE_RATE,
            "text": "the birch canoe", "text_source": text_source, "speaker": speaker, "split": split,
            "cutoff_start": False, "cutoff_end": False, "cutoff_reason": None, "use_for_training": True,
            **lineage("segment_audio", file_id * 4, file_id)}


def phonemes(seg: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    return {"segment_id": seg["segment_id"], "text_normalized": seg["text"], "phonemes": IPA,
            "phoneme_ids": ids, "num_phonemes": len(ids), "phonemes_per_second": len(ids) / seg["duration_s"],
            "vocab_version": VOCAB.version, **lineage("phonemize_text", seg["file_id"] * 4, seg["segment_id"])}


def scanned(path: str, problem: str | None = None) -> dict[str, Any]:
    """The scan of one input of source demo (audio, or with `problem` a text input)."""
    return {"source_name": "demo", "source_kind": "sidecar", "path": path, "rel_path": Path(path).name,
            "size_bytes": 1000, "speaker": "spk", "text": "text", "transcribed": True, "problem": problem,
            "problem_detail": problem, **lineage("scan_source", None, None)}


def quarantined(item_id: str, kind: str, stage: str, reason: str, file_id: str) -> dict[str, Any]:
    return {"item_id": item_id, "item_kind": kind, "path": f"/corpus/{file_id}.wav", "reason": reason,
            "detail": f"{reason} (fabricated)", **lineage(stage, file_id * 4, file_id)}


def consistent_corpus() -> Corpus:
    """Two usable files (A transcribed, B long-form; three segments, all phonemized), file C quarantined
    as silent by resample_audio, file D whose only piece segment_audio rejected as too short, and a
    transcript without audio that prepare_corpus quarantined."""
    segments = [segment(FILE_A, 0, 0.0, 2.5, "spk_a", "train"), segment(FILE_A, 1, 3.0, 5.5, "spk_a", "train"),
                segment(FILE_B, 0, 1.0, 4.0, "spk_b", "valid", text_source="whisper")]
    return {
        "source_files": [source_file(FILE_A, "spk_a", "train", "The birch canoe."),
                         source_file(FILE_B, "spk_b", "valid", None),
                         source_file(FILE_C, "spk_c", "test", "Rice is often served."),
                         source_file(FILE_D, "spk_b", "valid", "Glue the sheet.")],
        "audio": [audio(FILE_A, "spk_a", "train", 6.0), audio(FILE_B, "spk_b", "valid", 5.0),
                  audio(FILE_D, "spk_b", "valid", 0.6)],
        "segments": segments,
        "phonemes": [phonemes(seg, VOCAB.encode(IPA)) for seg in segments],
        "quarantine": [quarantined(FILE_C, "source_file", "resample_audio", "silent", FILE_C),
                       quarantined(f"{FILE_D}_0000", "segment", "segment_audio", "too_short", FILE_D),
                       {**quarantined("e" * 16, "source_file", "prepare_corpus", "missing_audio", "e"),
                        "path": ORPHAN, "parent_id": None}],
        "scanned_files": [*(scanned(f"/corpus/{f}.wav") for f in (FILE_A, FILE_B, FILE_C, FILE_D)),
                          scanned(ORPHAN, "missing_audio")],
    }


def stage_tables(corpus: Corpus, stage: str) -> dict[str, list[dict[str, Any]]]:
    """The rows one stage's database holds: its own table and the quarantine rows it wrote."""
    return {STAGES[stage]: corpus[STAGES[stage]],
            "quarantine": [row for row in corpus["quarantine"] if row["stage"] == stage]}


def write_corpus(corpus: Corpus, root: Path, reuse: list[Path] | None = None) -> list[Path]:
    """One stage database per stage, upstream first. With `reuse` (the databases of the consistent
    corpus), a stage whose rows are unchanged keeps its database (DuckDB writes are the slow part)."""
    consistent = consistent_corpus()
    paths = []
    for i, stage in enumerate(STAGES):
        tables = stage_tables(corpus, stage)
        if reuse and tables == stage_tables(consistent, stage):
            paths.append(reuse[i])
        else:
            paths.append(write_stage_db(root / DB_NAMES.get(stage, f"{STAGES[stage]}.duckdb"),
                                        {table: frame(table, rows) for table, rows in tables.items()}))
    return paths


@pytest.fixture(scope="module")
def cfg() -> ValidateManifestConfig:
    return params().validate_manifest


@pytest.fixture(scope="module")
def consistent_dbs(tmp_path_factory) -> list[Path]:
    return write_corpus(consistent_corpus(), tmp_path_factory.mktemp("consistent"))


def validate(paths: list[Path], cfg: ValidateManifestConfig) -> ValidationReport:
    return validate_manifests(paths, cfg, sample_rate=SAMPLE_RATE, vocab_size=len(VOCAB), vocab_version=VOCAB.version)


def test_consistent_corpus_passes_and_writes_report(tmp_path, cfg, consistent_dbs):
    report = validate(consistent_dbs, cfg)
    assert report.success, report.failure_message()
    assert report.row_counts == {"source_files": 4, "audio": 3, "segments": 3, "phonemes": 3, "quarantine": 3}
    assert {(c.kind, c.table) for c in report.checks} >= {("gx", "phonemes"), ("sql", "segments")}
    out = write_report(report, tmp_path / "report")
    assert json.loads((out / "report.json").read_text())["success"] is True
    assert [line.split(",")[:3] for line in (out / "quarantine_summary.csv").read_text().splitlines()[1:]] == [
        ["prepare_corpus", "missing_audio", "1"], ["resample_audio", "silent", "1"], ["segment_audio", "too_short", "1"]]
    assert "PASSED" in (out / "summary.md").read_text()
    assert not list(out.glob(".*tmp*")) and not Path("gx").exists()   # atomic writes; GX wrote no project


# ----------------------------------------------------------------------------- corruptions
def long_segment(corpus: Corpus) -> None:
    seg = corpus["segments"][1]
    seg["end_s"], seg["duration_s"] = seg["start_s"] + 45.0, 45.0


def phoneme_out_of_vocab(corpus: Corpus) -> None:
    corpus["phonemes"][2]["phoneme_ids"][-1] = len(VOCAB)


def speaker_in_two_splits(corpus: Corpus) -> None:
    corpus["source_files"][1]["speaker"] = "spk_a"   # spk_a is in train; file B is in valid


def file_neither_segmented_nor_quarantined(corpus: Corpus) -> None:
    corpus["quarantine"][:] = [row for row in corpus["quarantine"] if row["item_id"] != FILE_C]


def text_input_neither_segmented_nor_quarantined(corpus: Corpus) -> None:
    corpus["quarantine"][:] = [row for row in corpus["quarantine"] if row["path"] != ORPHAN]


def file_both_segmented_and_quarantined(corpus: Corpus) -> None:
    corpus["quarantine"].append(quarantined(FILE_A, "source_file", "segment_audio", "no_speech", FILE_A))


CORRUPTIONS: list[tuple[Callable[[Corpus], None], str, str, str]] = [
    (long_segment, "expect_column_values_to_be_between", "segments.duration_s", f"{FILE_A}_0001"),
    (phoneme_out_of_vocab, "expect_column_values_to_be_between", "phonemes.phoneme_id_max", f"{FILE_B}_0000"),
    (speaker_in_two_splits, "expect_speakers_to_be_in_one_split", "source_files+audio+segments", "spk_a"),
    (file_neither_segmented_nor_quarantined, "expect_source_files_to_be_segmented_or_quarantined",
     "source_files", FILE_C),
    (text_input_neither_segmented_nor_quarantined, "expect_scanned_files_to_end_in_segments_or_quarantine",
     "scanned_files", ORPHAN),
    (file_both_segmented_and_quarantined, "expect_scanned_files_to_end_in_segments_or_quarantine",
     "scanned_files", f"/corpus/{FILE_A}.wav"),
]


@pytest.mark.parametrize("corrupt, expectation, where, row", CORRUPTIONS, ids=[c[0].__name__ for c in CORRUPTIONS])
def test_corruption_fails_naming_expectation_and_row(tmp_path, cfg, consistent_dbs, corrupt, expectation, where, row):
    corpus = consistent_corpus()
    corrupt(corpus)
    report = validate(write_corpus(corpus, tmp_path, reuse=consistent_dbs), cfg)
    assert not report.success
    assert f"expectation {expectation} failed on {where} for rows [{row}]" in report.failure_message()


def test_duplicate_segment_id_fails(tmp_path, cfg, consistent_dbs):
    # schema.sql's PRIMARY KEY makes write_stage_db refuse duplicates, so write the table the way a
    # stage that bypassed the schema would.
    segments = consistent_corpus()["segments"]
    rows = frame("segments", segments + [copy.deepcopy(segments[0])])
    with duckdb.connect(str(tmp_path / "segments.duckdb")) as con:
        con.execute("CREATE TABLE segments AS SELECT * FROM rows")
        con.execute(schema_statements()["quarantine"])
    report = validate([*consistent_dbs[:2], tmp_path / "segments.duckdb", *consistent_dbs[3:]], cfg)
    assert (f"expectation expect_column_values_to_be_unique failed on segments.segment_id for rows [{FILE_A}_0000]"
            in report.failure_message())


def test_missing_table_is_an_error(cfg, consistent_dbs):
    with pytest.raises(ValueError, match=r"table\(s\) \['phonemes'\]"):
        validate([*consistent_dbs[:3], consistent_dbs[4]], cfg)


def test_stage_writes_report_then_exits_nonzero(tmp_path, capsys, consistent_dbs):
    corpus = consistent_corpus()
    long_segment(corpus)
    paths = write_corpus(corpus, tmp_path, reuse=consistent_dbs)
    overrides = {"prepare_corpus": {"manifest": str(paths[0]),   # its folder holds sources/demo.duckdb
                                    "sources": [{"name": "demo", "kind": "sidecar", "path": "/corpus"}]},
                 "resample_audio": {"manifest": str(paths[1])},
                 "segment_audio": {"manifest": str(paths[2])},
                 "phonemize_text": {"manifest": str(paths[3]), "vocab_path": str(VOCAB_PATH)},
                 "check_transcripts": {"manifest": str(write_stage_db(tmp_path / "checks.duckdb", {
                     "transcript_checks": frame("transcript_checks", []), "quarantine": frame("quarantine", [])}))},
                 "validate_manifest": {"report_dir": str(tmp_path / "report")}}
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(deep_merge(read_yaml(PROJECT_ROOT / "params.yaml"), overrides)))
    spec = importlib.util.spec_from_file_location("validate_manifest_stage",
                                                  PROJECT_ROOT / "stages" / "validate_manifest.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)

    assert stage.main(params_path) == 1
    message = f"expectation expect_column_values_to_be_between failed on segments.duration_s for rows [{FILE_A}_0001]"
    assert message in capsys.readouterr().err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["success"] is False and report["settings"]["vocab_size"] == len(VOCAB)
    assert message in (tmp_path / "report" / "summary.md").read_text()
