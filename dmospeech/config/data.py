"""Params groups of the data half's stages (prepare_demo_corpus ... validate_manifest), part of
`dmospeech.config.Params`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: Literal["librispeech", "ljspeech", "sidecar", "csv", "longform"]
    path: str
    speaker: Optional[str] = None  # ljspeech / sidecar: one speaker name for the whole source


@dataclass(frozen=True)
class SplitConfig:
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class PrepareDemoCorpusConfig:
    out_dir: str
    espeak_voices: tuple[str, ...]
    sentences: tuple[str, ...]
    pocketsphinx_dir: str
    longform_voice: str
    longform_sentences: int
    seed: int = 0


@dataclass(frozen=True)
class PrepareCorpusConfig:
    sources: tuple[SourceConfig, ...]
    manifest: str
    split: SplitConfig
    audio_extensions: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


@dataclass(frozen=True)
class ResampleAudioConfig:
    sample_rate: int
    quality: Literal["VHQ", "HQ", "MQ", "LQ", "QQ"]
    normalize: Literal["peak", "loudness", "none"]
    peak_dbfs: float
    loudness_lufs: float
    remove_dc: bool
    min_duration_s: float
    max_duration_s: float
    silence_dbfs: float
    clip_level: float
    max_clipped_fraction: float
    out_dir: str
    manifest: str


@dataclass(frozen=True)
class CutoffConfig:
    edge_window_s: float      # window at each segment edge whose energy is measured
    edge_energy_db: float     # a level is speech when above (segment's loudest frame + this) and above
    floor_percentile: float   # (noise floor + edge_floor_db), the floor being this percentile of the frame levels
    edge_floor_db: float      # around the segment; an edge whose window is speech is cut off
    tail_window_s: float      # the end is also cut off when a frame this close to it is above (loudest +
    tail_energy_db: float     # tail_energy_db) and the floor margin (a cut in a stop closure); <= edge_pad_s
    word_margin_s: float      # a word ending closer than this to the cut counts as cut off
    edge_vad_window_s: float  # given-text clips in noise (loudest frame < edge_vad_max_snr_db above the floor): the
    edge_vad_score: float     # end is also cut off when the VAD's mean speech score over its last edge_vad_window_s
    edge_vad_max_snr_db: float  # is above edge_vad_score and a frame there is edge_vad_floor_db above the floor
    edge_vad_floor_db: float  # (edge_vad_score 0: off)
    last_word_gap_s: float    # given-text clips: the end is cut off when the last word Whisper hears is not the
                              # text's last word and ends less than this before the end; a heard last word equal
                              # to the text's overrides the VAD rule (0: off; needs Whisper on every such clip)
    last_word_max_cer: float  # a heard last word this close to the text's (CER), and not its beginning, is the same
                              # word spelt another way (a name); a cut word is heard as its beginning
    last_word_skip_sources: tuple[str, ...]  # sources not checked so (Whisper misreads synthetic speech)
    last_word_clear_s: float  # a heard last word that is the text's and ends at least this long before the end
                              # also overrides the energy tests' end flag: a word cut short runs to the end (0: off)
    last_word_max_text_cer: float  # Whisper's whole transcript further than this (CER) from the text (a decode
                                   # that loops): its last word is not used
    last_word_min_vad_speech: float  # trailing words Whisper hears with less than this share of their time in VAD
                                     # speech are not words ("you" over the noise after the last one) (0: off)
    lead_fragment_s: float    # given-text clips starting in a sound that a pause follows within this (another
                              # word's tail): the start moves to the pause if Whisper then hears the text's first
                              # word there (0: off)


@dataclass(frozen=True)
class SpeechCheckConfig:
    min_speech_fraction: float      # given-text clip: VAD speech / trimmed length below this -> no_speech_detected (0: off)
    min_letters_per_speech_s: float  # Whisper piece: transcript letters per VAD speech second below -> transcript_collapse


@dataclass(frozen=True)
class SegmentAudioConfig:
    whisper_model: str        # "base" | "tiny.en" (packaged) or a local CTranslate2 folder
    compute_type: str
    language: str
    alignment_model: Optional[str]  # local wav2vec2 folder for whisperx.align; None = Whisper word times
    max_segment_s: float
    min_segment_s: float
    transcribed_max_s: float  # transcribed files longer than this are re-transcribed and cut
    trim_top_db: float
    edge_pad_s: float
    vad_onset: float
    vad_offset: float
    cutoff: CutoffConfig
    speech_check: SpeechCheckConfig
    exclude_cutoff: bool
    cpu_threads: int
    device: str               # cpu | cuda: on cuda, tasks go to Dask workers with resources {GPU: 1}
    cache_dir: str            # per-file long-form results (persistent DVC output: never shared between clones)
    manifest: str


@dataclass(frozen=True)
class PhonemizeTextConfig:
    language: str
    with_stress: bool
    preserve_punctuation: bool
    vocab_path: str
    manifest: str


@dataclass(frozen=True)
class ValidateManifestConfig:
    min_segment_s: float
    max_segment_s: float
    min_phonemes_per_second: float
    max_phonemes_per_second: float
    report_dir: str


@dataclass(frozen=True)
class CheckTranscriptsConfig:
    """Transcript <-> audio agreement of the given-text segments (dmospeech.data.agreement)."""
    mismatch_cer: float               # CER above this: quarantined `transcript_mismatch`
    doubtful_cer: float               # CER above this (up to mismatch_cer): verdict `doubtful`, still trains
    skip_sources: tuple[str, ...]     # sources whose transcripts are not checked (every other source is)
    gpu_batch_size: int               # clips decoded at once when segment_audio.device is cuda (CPU: one by one)
    cache_dir: str                    # Whisper's text per segment (persistent DVC output of the stage)
    report_dir: str                   # counts, CER percentiles per source and the worst rows
    manifest: str
