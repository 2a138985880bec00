"""Stage check_transcripts: every given transcript against what Whisper hears in its segment.

Writes `transcript_checks` and `quarantine` (reason transcript_mismatch) to
`params.check_transcripts.manifest`, and the report (counts, CER percentiles per source, the worst
rows with both texts) to `<report_dir>/report.json`.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.agreement import agreement_report, check_transcripts
from dmospeech.data.manifest import Lineage, open_manifests, write_stage_db
from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.executor import Executor

SEGMENTS_SQL = """
    SELECT g.*, s.source_name FROM segments g JOIN source_files s USING (file_id) ORDER BY g.segment_id
"""


def main() -> None:
    params = load_params()
    cfg, seg_cfg = params.check_transcripts, params.segment_audio
    with open_manifests([params.prepare_corpus.manifest, seg_cfg.manifest]) as con:
        segments = con.execute(SEGMENTS_SQL).df()
    lineage = Lineage.for_stage("check_transcripts", {"cfg": cfg, "whisper_model": seg_cfg.whisper_model,
                                                      "language": seg_cfg.language,
                                                      "compute_type": seg_cfg.compute_type})
    with Executor(params.compute) as executor:
        checks, quarantine = check_transcripts(segments, cfg, seg_cfg, lineage, Path.cwd(), executor=executor)
    write_stage_db(cfg.manifest, {"transcript_checks": checks, "quarantine": quarantine})
    report = agreement_report(checks, cfg)
    write_json_atomic(Path(cfg.report_dir) / "report.json", report, indent=1)
    Console().print(f"[bold]check_transcripts[/]: {len(checks)} given transcripts, verdicts {report['verdicts']}; "
                    f"CER percentiles per source {report['cer_percentiles']}; report {cfg.report_dir}/report.json")


if __name__ == "__main__":
    main()
