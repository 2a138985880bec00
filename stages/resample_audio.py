"""Stage resample_audio: every source file to 48 kHz mono FLAC, with per-file statistics."""
from rich.console import Console
from rich.progress import Progress

from dmospeech.config import load_params
from dmospeech.data.manifest import Lineage, read_table, write_stage_db
from dmospeech.data.resample import resample_corpus
from dmospeech.ops.executor import Executor


def main() -> None:
    params = load_params()
    cfg = params.resample_audio
    sources = read_table(params.prepare_corpus.manifest, "source_files")
    with Progress(transient=True) as progress, Executor(params.compute) as executor:
        task = progress.add_task("resample_audio", total=len(sources))
        audio, quarantine = resample_corpus(sources, cfg, Lineage.for_stage("resample_audio", cfg),
                                            progress=lambda n: progress.advance(task, n), executor=executor)
    write_stage_db(cfg.manifest, {"audio": audio, "quarantine": quarantine})
    Console().print(f"[bold]resample_audio[/]: {len(audio)} files, {audio['duration_s'].sum() / 60:.1f} min at "
                    f"{cfg.sample_rate} Hz; {len(quarantine)} quarantined "
                    f"{quarantine['reason'].value_counts().to_dict() or ''}")


if __name__ == "__main__":
    main()
