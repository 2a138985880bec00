"""Stage phonemize_text: IPA phonemes and symbol ids for every segment."""
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.manifest import Lineage, read_table, write_stage_db
from dmospeech.data.phonemize import phonemize_segments
from dmospeech.data.text import Vocabulary
from dmospeech.ops.executor import Executor


def main() -> None:
    params = load_params()
    cfg = params.phonemize_text
    segments = read_table(params.segment_audio.manifest, "segments")
    vocab = Vocabulary.load(cfg.vocab_path)
    lineage = Lineage.for_stage("phonemize_text", {"cfg": cfg, "vocab": vocab.version})
    with Executor(params.compute) as executor:
        phonemes, quarantine = phonemize_segments(segments, cfg, vocab, lineage, executor=executor)
    write_stage_db(cfg.manifest, {"phonemes": phonemes, "quarantine": quarantine})
    rate = phonemes["phonemes_per_second"].median() if len(phonemes) else float("nan")
    Console().print(f"[bold]phonemize_text[/]: {len(phonemes)} segments, median {rate:.1f} symbols/s, "
                    f"vocabulary {vocab.version}; {len(quarantine)} quarantined "
                    f"{quarantine['reason'].value_counts().to_dict() or ''}")


if __name__ == "__main__":
    main()
