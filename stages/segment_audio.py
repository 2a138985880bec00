"""DVC stage `segment_audio`: cut the 48 kHz audio into training segments with text (paper sec 4.3).

Reads `source_files` (prepare_corpus) and `audio` (resample_audio), writes `segments` and
`quarantine` to `params.segment_audio.manifest`. Run from the project root:
`python stages/segment_audio.py`.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.manifest import Lineage, open_manifests, write_stage_db
from dmospeech.data.segment import segment_corpus
from dmospeech.ops.executor import Executor

AUDIO_ROWS_SQL = """
    SELECT a.*, s.source_name, s.text, s.transcribed
    FROM audio AS a JOIN source_files AS s USING (file_id)
    ORDER BY a.file_id
"""


def main() -> None:
    params = load_params("params.yaml")
    cfg = params.segment_audio
    with open_manifests([params.prepare_corpus.manifest, params.resample_audio.manifest]) as con:
        audio_rows = con.execute(AUDIO_ROWS_SQL).df()
    lineage = Lineage.for_stage("segment_audio", cfg)
    with Executor(params.compute) as executor:
        segments, quarantine = segment_corpus(audio_rows, cfg, lineage, Path.cwd(), executor=executor)
    write_stage_db(cfg.manifest, {"segments": segments, "quarantine": quarantine})

    console = Console()
    cut = segments[segments.cutoff_start | segments.cutoff_end]
    console.print(f"[bold]segment_audio[/]: {len(audio_rows)} files -> {len(segments)} segments "
                  f"({segments.duration_s.sum() / 3600:.2f} h; "
                  f"{(segments.text_source == 'given').sum()} with given text, "
                  f"{(segments.text_source == 'whisper').sum()} transcribed by Whisper {cfg.whisper_model})")
    console.print(f"  flagged as cut off: {len(cut)} (start {int(segments.cutoff_start.sum())}, "
                  f"end {int(segments.cutoff_end.sum())}); used for training: {int(segments.use_for_training.sum())}")
    for reason, count in quarantine.reason.value_counts().items():
        console.print(f"  quarantined [yellow]{reason}[/]: {count}")
    console.print(f"  wrote {cfg.manifest}")


if __name__ == "__main__":
    main()
