"""The `validate_manifest` gate: Great Expectations suites per table plus relational SQL checks.

Per-table rules run as GX 1.x suites built in code (`build_suites`) over each manifest view,
with `result_format` COMPLETE and the table's id column as `unexpected_index_column_names`, so a
failure names its rows. Rules that span tables are SQL queries over `open_manifests` that must
return no ids (`RELATIONAL_CHECKS`, `lineage_checks`). `validate_manifests` runs both and returns
a `ValidationReport`; `dmospeech.data.gate_report` writes and prints it.
"""
from __future__ import annotations

import os
import typing
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal, Optional

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb  # noqa: E402
import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig)
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from dmospeech.config import Params, SourceConfig, ValidateManifestConfig  # noqa: E402
from dmospeech.data.ingest import SPLITS, scan_db_path  # noqa: E402
from dmospeech.data.manifest import QUARANTINE_REASONS, open_manifests  # noqa: E402
from dmospeech.ops.atomic import dumps_strict  # noqa: E402

# The tables validated here (the stage databases of `Params.manifests()`) and their id columns.
ID_COLUMNS = {"source_files": "file_id", "audio": "file_id", "segments": "segment_id",
              "phonemes": "segment_id", "quarantine": "item_id"}
SOURCE_KINDS = typing.get_args(typing.get_type_hints(SourceConfig)["kind"])
QUARANTINE_KINDS = ("source_file", "segment")  # schema.sql: quarantine.item_kind
MAX_FAILING_ROWS = 20    # failing row ids kept per check (counts are always complete)
OVERLAP_TOLERANCE_S = 1e-6
NON_EMPTY = r"\S"        # at least one non-whitespace character

# Lineage columns that must be set, per table: source files have no parent; a quarantined
# unreadable file may have neither hash nor parent.
LINEAGE = ("source_sha256", "parent_id", "stage", "params_hash", "code_version", "created_at", "updated_at")
LINEAGE_COLUMNS = {"source_files": tuple(c for c in LINEAGE if c != "parent_id"), "audio": LINEAGE,
                   "segments": LINEAGE, "phonemes": LINEAGE, "quarantine": LINEAGE[2:]}

# GX sees `phonemes` with the id list replaced by its min, max and length.
TABLE_QUERIES = {table: f"SELECT * FROM {table}" for table in ID_COLUMNS} | {
    "phonemes": "SELECT * EXCLUDE (phoneme_ids), list_min(phoneme_ids) AS phoneme_id_min, "
                "list_max(phoneme_ids) AS phoneme_id_max, len(phoneme_ids) AS phoneme_id_count "
                "FROM phonemes",
}


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation or relational check."""

    expectation: str                # GX expectation type, or the relational check's name
    table: str
    column: Optional[str]           # None for relational checks
    kind: Literal["gx", "sql"]
    success: bool
    unexpected_count: int           # distinct ids of failing rows (a duplicated id counts once)
    failing_rows: tuple[str, ...]   # ids of failing rows, at most MAX_FAILING_ROWS
    detail: str                     # expectation arguments or the check's description
    error: Optional[str] = None     # set when the check itself raised

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table

    def message(self) -> str:
        """One line: which expectation failed, where, and on which rows."""
        if self.error:
            return f"expectation {self.expectation} could not run on {self.where}: {self.error}"
        more = self.unexpected_count - len(self.failing_rows)
        rows = ", ".join(self.failing_rows) + (f", ... {more} more" if more > 0 else "")
        detail = f" ({self.detail})" if self.detail else ""
        return f"expectation {self.expectation} failed on {self.where} for rows [{rows}]{detail}"


@dataclass(frozen=True)
class QuarantineCount:
    stage: str
    reason: str
    count: int


@dataclass(frozen=True)
class ValidationReport:
    """Everything `validate_manifests` found: per-check results, row and quarantine counts."""

    success: bool
    checks: tuple[CheckResult, ...]
    row_counts: dict[str, int]
    quarantine_summary: tuple[QuarantineCount, ...]
    stage_dbs: tuple[str, ...]
    settings: dict[str, Any]        # sample rate, vocabulary and the validate_manifest params
    gate: str = "validate_manifest"  # the stage this report gates

    @property
    def failures(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.success]

    def failure_message(self) -> str:
        """Every failed check, one per line ('' when validation passed)."""
        return "\n".join(check.message() for check in self.failures)


# ----------------------------------------------------------------------------- GX suites
def source_files_suite() -> gx.ExpectationSuite:
    """Unique ids, known kinds and splits, hashes and speakers set, text where transcribed."""
    transcribed = Column("transcribed") == True  # noqa: E712 (builds a GX condition)
    return gx.ExpectationSuite(name="source_files", expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="file_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="speaker"),
        gxe.ExpectColumnValuesToNotBeNull(column="source_sha256"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        gxe.ExpectColumnValuesToBeInSet(column="source_kind", value_set=list(SOURCE_KINDS)),
        gxe.ExpectColumnValuesToNotBeNull(column="text", row_condition=transcribed),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=NON_EMPTY, row_condition=transcribed),
    ])


def audio_suite(sample_rate: int) -> gx.ExpectationSuite:
    """Unique ids, the pipeline's sample rate, positive duration, clipping a fraction."""
    return gx.ExpectationSuite(name="audio", expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="file_id"),
        gxe.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[sample_rate]),
        gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="clipped_fraction", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
    ])


def segments_suite(cfg: ValidateManifestConfig, sample_rate: int) -> gx.ExpectationSuite:
    """Unique ids, duration within the configured bounds, ordered times, rate, text."""
    return gx.ExpectationSuite(name="segments", expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="segment_id"),
        gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=cfg.min_segment_s,
                                          max_value=cfg.max_segment_s),
        gxe.ExpectColumnValuesToBeBetween(column="start_s", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_s", column_B="start_s"),
        gxe.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[sample_rate]),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=NON_EMPTY),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
    ])


def phonemes_suite(cfg: ValidateManifestConfig, vocab_size: int,
                   vocab_version: Optional[str] = None) -> gx.ExpectationSuite:
    """Unique ids, non-empty phonemes at a plausible rate, one id per symbol, every id in [0, vocab_size)."""
    expectations = [
        gxe.ExpectColumnValuesToBeUnique(column="segment_id"),
        gxe.ExpectColumnValuesToBeBetween(column="num_phonemes", min_value=1),
        gxe.ExpectColumnValuesToMatchRegex(column="phonemes", regex=NON_EMPTY),
        gxe.ExpectColumnValuesToBeBetween(column="phonemes_per_second", min_value=cfg.min_phonemes_per_second,
                                          max_value=cfg.max_phonemes_per_second),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="num_phonemes", column_B="phoneme_id_count"),
        gxe.ExpectColumnValuesToBeBetween(column="phoneme_id_min", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="phoneme_id_max", max_value=vocab_size - 1),
    ]
    if vocab_version is not None:
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column="vocab_version", value_set=[vocab_version]))
    return gx.ExpectationSuite(name="phonemes", expectations=expectations)


def quarantine_suite() -> gx.ExpectationSuite:
    """Every quarantine row gives a known reason and item kind."""
    return gx.ExpectationSuite(name="quarantine", expectations=[
        gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=sorted(QUARANTINE_REASONS)),
        gxe.ExpectColumnValuesToBeInSet(column="item_kind", value_set=list(QUARANTINE_KINDS)),
    ])


def build_suites(cfg: ValidateManifestConfig, sample_rate: int, vocab_size: int,
                 vocab_version: Optional[str] = None) -> dict[str, gx.ExpectationSuite]:
    """One expectation suite per manifest table, keyed by table name."""
    return {"source_files": source_files_suite(), "audio": audio_suite(sample_rate),
            "segments": segments_suite(cfg, sample_rate),
            "phonemes": phonemes_suite(cfg, vocab_size, vocab_version), "quarantine": quarantine_suite()}


# ----------------------------------------------------------------------------- running GX
def gx_context() -> Any:
    """An ephemeral GX context: in-memory stores, no analytics, no progress bars, no files."""
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               analytics_enabled=False,
                               progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False))
    return gx.get_context(project_config=config, mode="ephemeral")


def _exception_messages(info: dict) -> list[str]:
    """Error messages in a GX `exception_info` (flat, or keyed by metric when a metric failed)."""
    if "raised_exception" in info:
        return [str(info["exception_message"])] if info["raised_exception"] else []
    return sorted({msg for nested in info.values() if isinstance(nested, dict)
                   for msg in _exception_messages(nested)})


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _check_from_gx(table: str, result: Any, id_column: str) -> CheckResult:
    """A `CheckResult` from one GX `ExpectationValidationResult`."""
    kwargs = dict(result.expectation_config.kwargs)
    columns = [kwargs.pop(key) for key in ("column", "column_A", "column_B") if key in kwargs]
    kwargs.pop("batch_id", None)
    ids = _unique(str(row[id_column]) for row in result.result.get("unexpected_index_list") or [])
    errors = _exception_messages(result.exception_info or {})
    return CheckResult(expectation=result.expectation_config.type, table=table, column=",".join(columns) or None,
                       kind="gx", success=bool(result.success), unexpected_count=len(ids),
                       failing_rows=tuple(ids[:MAX_FAILING_ROWS]),
                       detail=dumps_strict(kwargs, indent=None, default=str) if kwargs else "",
                       error="; ".join(errors) or None)


def run_suite(context: Any, table: str, rows: pd.DataFrame, suite: gx.ExpectationSuite,
              id_column: Optional[str] = None) -> list[CheckResult]:
    """Validate `rows` of `table` against `suite`; failures carry the id column (default: the table's)."""
    id_column = id_column or ID_COLUMNS[table]
    batch_definition = (context.data_sources.add_pandas(f"{table}_rows").add_dataframe_asset(table)
                        .add_batch_definition_whole_dataframe(table))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                  "unexpected_index_column_names": [id_column]})
    return [_check_from_gx(table, r, id_column) for r in result.results]


# ----------------------------------------------------------------------------- relational checks
@dataclass(frozen=True)
class RelationalCheck:
    """A SQL query over the manifest views that selects the ids (column `id`) breaking a rule."""

    name: str
    table: str
    description: str
    sql: str


# Tables the relational checks read besides those of ID_COLUMNS: the scan of every source.
SCAN_TABLES = ("scanned_files",)

RELATIONAL_CHECKS = (
    RelationalCheck("expect_scanned_files_to_end_in_segments_or_quarantine", "scanned_files",
                    "every scanned input (audio or text) ends in segments or in quarantine, not in both "
                    "(ids are paths)", """
        SELECT sc.path AS id FROM scanned_files sc LEFT JOIN source_files s ON s.path = sc.path
        WHERE EXISTS (SELECT 1 FROM quarantine q WHERE q.item_kind = 'source_file'
                      AND (q.path = sc.path OR q.item_id = s.file_id))
            = (EXISTS (SELECT 1 FROM segments g WHERE g.file_id = s.file_id)
               OR EXISTS (SELECT 1 FROM quarantine q WHERE q.item_kind = 'segment' AND q.parent_id = s.file_id))"""),
    RelationalCheck("expect_source_files_to_be_segmented_or_quarantined", "source_files",
                    "every source file has segments, a quarantine row, or quarantined segments", """
        SELECT s.file_id AS id FROM source_files s
        WHERE NOT EXISTS (SELECT 1 FROM segments g WHERE g.file_id = s.file_id)
          AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.item_id = s.file_id
                          OR (q.item_kind = 'segment' AND q.parent_id = s.file_id))"""),
    RelationalCheck("expect_segments_to_be_phonemized_or_quarantined", "segments",
                    "every segment has a phonemes row or a quarantine row", """
        SELECT g.segment_id AS id FROM segments g
        WHERE NOT EXISTS (SELECT 1 FROM phonemes p WHERE p.segment_id = g.segment_id)
          AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.item_id = g.segment_id)"""),
    RelationalCheck("expect_speakers_to_be_in_one_split", "source_files+audio+segments",
                    "no speaker appears in two splits (ids are speakers)", """
        SELECT speaker AS id FROM (SELECT speaker, split FROM source_files
                                   UNION ALL SELECT speaker, split FROM audio
                                   UNION ALL SELECT speaker, split FROM segments)
        GROUP BY speaker HAVING count(DISTINCT split) > 1"""),
    RelationalCheck("expect_audio_to_have_a_source_file", "audio",
                    "every audio row has a source_files row", """
        SELECT a.file_id AS id FROM audio a
        WHERE NOT EXISTS (SELECT 1 FROM source_files s WHERE s.file_id = a.file_id)"""),
    RelationalCheck("expect_segments_to_have_audio", "segments",
                    "every segment's file_id is in audio", """
        SELECT g.segment_id AS id FROM segments g
        WHERE NOT EXISTS (SELECT 1 FROM audio a WHERE a.file_id = g.file_id)"""),
    RelationalCheck("expect_phonemes_to_have_a_segment", "phonemes",
                    "every phonemes row has a segments row", """
        SELECT p.segment_id AS id FROM phonemes p
        WHERE NOT EXISTS (SELECT 1 FROM segments g WHERE g.segment_id = p.segment_id)"""),
    RelationalCheck("expect_segments_of_a_file_to_not_overlap", "segments",
                    "a segment starts after every earlier segment of its file ends", f"""
        SELECT segment_id AS id FROM (
            SELECT segment_id, start_s, max(end_s) OVER (
                PARTITION BY file_id ORDER BY start_s, segment_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
            FROM segments)
        WHERE start_s < previous_end - {OVERLAP_TOLERANCE_S}"""),
)


def lineage_checks() -> list[RelationalCheck]:
    """One check per table: its required lineage columns are all set."""
    return [RelationalCheck("expect_lineage_columns_to_not_be_null", table,
                            f"lineage columns {', '.join(columns)} are set",
                            f"SELECT {ID_COLUMNS[table]} AS id FROM {table} WHERE "
                            + " OR ".join(f"{column} IS NULL" for column in columns))
            for table, columns in LINEAGE_COLUMNS.items()]


def run_relational_check(con: duckdb.DuckDBPyConnection, check: RelationalCheck) -> CheckResult:
    """Run `check`; it passes when its query selects no ids."""
    query = f"SELECT DISTINCT CAST(id AS VARCHAR) AS id FROM ({check.sql})"
    count = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
    ids = [row[0] for row in con.execute(f"{query} ORDER BY id LIMIT {MAX_FAILING_ROWS}").fetchall()]
    return CheckResult(expectation=check.name, table=check.table, column=None, kind="sql", success=count == 0,
                       unexpected_count=count, failing_rows=tuple(ids), detail=check.description)


# ----------------------------------------------------------------------------- the gate
def require_tables(con: duckdb.DuckDBPyConnection, stage_dbs: Iterable[str | os.PathLike]) -> None:
    """Raise if a manifest table is missing from every stage database."""
    present = {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()").fetchall()}
    missing = [table for table in (*ID_COLUMNS, *SCAN_TABLES) if table not in present]
    if missing:
        raise ValueError(f"no stage database holds table(s) {missing} (searched {[str(db) for db in stage_dbs]}); "
                         "run `dvc repro` for the stages that write them")


def quarantine_summary(con: duckdb.DuckDBPyConnection) -> tuple[QuarantineCount, ...]:
    """Quarantined items counted per writing stage and reason."""
    rows = con.execute("SELECT stage, reason, count(*) FROM quarantine GROUP BY stage, reason "
                       "ORDER BY stage, reason").fetchall()
    return tuple(QuarantineCount(stage, reason, count) for stage, reason, count in rows)


def gated_manifests(params: Params) -> list[str]:
    """The stage databases `validate_manifest` reads: every source's scan, then `params.manifests()`."""
    cfg = params.prepare_corpus
    return [str(scan_db_path(cfg.manifest, source.name)) for source in cfg.sources] + params.manifests()


def validate_manifests(stage_dbs: Iterable[str | os.PathLike], cfg: ValidateManifestConfig, sample_rate: int,
                       vocab_size: int, vocab_version: Optional[str] = None) -> ValidationReport:
    """Run every table suite and relational check over the stage databases.

    `sample_rate` is the rate every audio and segment row must have (`resample_audio.sample_rate`);
    phoneme ids must lie in [0, vocab_size); when `vocab_version` is given, every phonemes row must
    name it. `stage_dbs` include the sources' scans (`gated_manifests`), so that every input can be
    followed to segments or quarantine. Raises if a database or table is missing; rule violations go
    into the report.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
    stage_dbs = tuple(str(db) for db in stage_dbs)
    suites = build_suites(cfg, sample_rate, vocab_size, vocab_version)
    con = open_manifests(stage_dbs)
    try:
        require_tables(con, stage_dbs)
        context = gx_context()
        checks = [check for table, suite in suites.items()
                  for check in run_suite(context, table, con.execute(TABLE_QUERIES[table]).df(), suite)]
        checks += [run_relational_check(con, check) for check in (*RELATIONAL_CHECKS, *lineage_checks())]
        row_counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ID_COLUMNS}
        quarantined = quarantine_summary(con)
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "transcript_checks" in tables:  # given transcripts Whisper half agrees with: they train, counted here
            row_counts["transcript_doubtful"] = con.execute(
                "SELECT count(*) FROM transcript_checks WHERE verdict = 'doubtful'").fetchone()[0]
    finally:
        con.close()
    settings = {"sample_rate": sample_rate, "vocab_size": vocab_size, "vocab_version": vocab_version,
                "validate_manifest": asdict(cfg)}
    return ValidationReport(success=all(check.success for check in checks), checks=tuple(checks),
                            row_counts=row_counts, quarantine_summary=quarantined, stage_dbs=stage_dbs,
                            settings=settings)
