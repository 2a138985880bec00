"""The encode_latents gate: a GX suite over the `latents` table plus SQL checks.

GX sees `latents` with one added column, `expected_frames` = ceil(num_samples / hop), computed in
SQL (`latents_query`). Within-table SQL checks catch overlapping shard ranges; relational checks
against the data half's manifests catch training segments without latents and latents without a
segment. Suites run with the helpers of `dmospeech.data.validate`, so reports look the same.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from dmospeech.codec.latents import TRAINING_SEGMENTS_SQL
from dmospeech.data.manifest import open_manifests
from dmospeech.data.validate import (CheckResult, RelationalCheck, ValidationReport, gx_context,
                                     run_relational_check, run_suite)

MAX_ABS_MEAN = 50.0     # |mean| of one utterance's latents
MAX_STD = 50.0          # 0 < std of one utterance's latents < MAX_STD
MAX_ABS_VALUE = 1000.0  # |min|, |max| of one utterance's latents
STATS_COLUMNS = ("mean", "std", "min", "max")


def latents_query(hop_length: int) -> str:
    """The `latents` rows as GX sees them: plus expected_frames = ceil(num_samples / hop)."""
    return f"SELECT *, (num_samples + {hop_length} - 1) // {hop_length} AS expected_frames FROM latents"


def latents_suite(codec_checkpoint: Optional[str] = None) -> gx.ExpectationSuite:
    """Unique ids, frame count by the hop rule, finite per-utterance stats in a sane range and,
    when given, one codec checkpoint throughout."""
    expectations = [
        gxe.ExpectColumnValuesToBeUnique(column="segment_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="shard"),
        gxe.ExpectColumnValuesToBeBetween(column="frame_offset", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="num_frames", min_value=1),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="num_frames", column_B="expected_frames"),
        *[gxe.ExpectColumnValuesToNotBeNull(column=column) for column in STATS_COLUMNS],  # NaN counts as null
        gxe.ExpectColumnValuesToBeBetween(column="mean", min_value=-MAX_ABS_MEAN, max_value=MAX_ABS_MEAN),
        gxe.ExpectColumnValuesToBeBetween(column="std", min_value=0, max_value=MAX_STD, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE),
        gxe.ExpectColumnValuesToBeBetween(column="max", min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE),
    ]
    if codec_checkpoint is not None:
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column="codec_checkpoint", value_set=[codec_checkpoint]))
    return gx.ExpectationSuite(name="latents", expectations=expectations)


SHARD_CHECKS = (
    RelationalCheck("expect_latent_ranges_to_not_overlap", "latents",
                    "a segment's frames start after every earlier segment of its shard ends", """
        SELECT segment_id AS id FROM (
            SELECT segment_id, frame_offset, max(frame_offset + num_frames) OVER (
                PARTITION BY shard ORDER BY frame_offset, segment_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
            FROM latents)
        WHERE frame_offset < previous_end"""),
)

MANIFEST_CHECKS = (
    RelationalCheck("expect_training_segments_to_have_latents", "segments",
                    "every training segment (use_for_training, not quarantined) has a latents row", f"""
        SELECT t.segment_id AS id FROM ({TRAINING_SEGMENTS_SQL}) t
        WHERE NOT EXISTS (SELECT 1 FROM latents l WHERE l.segment_id = t.segment_id)"""),
    RelationalCheck("expect_latents_to_have_a_segment", "latents",
                    "every latents row has a segments row", """
        SELECT l.segment_id AS id FROM latents l
        WHERE NOT EXISTS (SELECT 1 FROM segments g WHERE g.segment_id = l.segment_id)"""),
)


def run_latents_suite(context: Any, rows: pd.DataFrame, suite: gx.ExpectationSuite) -> list[CheckResult]:
    """`run_suite` for the latents table, whose rows are named by segment_id."""
    return run_suite(context, "latents", rows, suite, id_column="segment_id")


def check_latents(con: duckdb.DuckDBPyConnection, hop_length: int,
                  codec_checkpoint: Optional[str] = None) -> list[CheckResult]:
    """The GX suite and the shard checks over the `latents` table or view of `con`."""
    rows = con.execute(latents_query(hop_length)).df()
    checks = run_latents_suite(gx_context(), rows, latents_suite(codec_checkpoint))
    return checks + [run_relational_check(con, check) for check in SHARD_CHECKS]


def validate_latents(stage_dbs: Iterable[str | os.PathLike], hop_length: int,
                     codec_checkpoint: Optional[str] = None) -> ValidationReport:
    """Check the `latents` table against the rules and the data half's manifests.

    `stage_dbs`: the data half's stage databases plus the encode_latents manifest. Raises if one
    is missing; rule violations go into the report.
    """
    stage_dbs = tuple(str(db) for db in stage_dbs)
    con = open_manifests(stage_dbs)
    try:
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables "
                                                "WHERE table_catalog = current_database()").fetchall()}
        missing = sorted({"latents", "segments", "audio", "quarantine"} - tables)
        if missing:
            raise ValueError(f"no stage database holds table(s) {missing} (searched {list(stage_dbs)}); "
                             "run `dvc repro encode_latents`")
        checks = check_latents(con, hop_length, codec_checkpoint)
        checks += [run_relational_check(con, check) for check in MANIFEST_CHECKS]
        row_counts = {"latents": con.execute("SELECT count(*) FROM latents").fetchone()[0]}
    finally:
        con.close()
    settings = {"hop_length": hop_length, "codec_checkpoint": codec_checkpoint, "max_abs_mean": MAX_ABS_MEAN,
                "max_std": MAX_STD, "max_abs_value": MAX_ABS_VALUE}
    return ValidationReport(success=all(check.success for check in checks), checks=tuple(checks),
                            row_counts=row_counts, quarantine_summary=(), stage_dbs=stage_dbs, settings=settings,
                            gate="encode_latents")
