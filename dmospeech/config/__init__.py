"""Typed, frozen configuration mirroring `params.yaml`, one module per pipeline component.

One dataclass per params group; `load_params` parses the YAML strictly: an unknown key, a missing
key or a value of the wrong type is an error that names the key (`segment_audio.max_segment_s`).
A profile (`profiles/<name>.yaml`) is a partial document deep-merged over `params.yaml`.
Every group is re-exported here: `from dmospeech.config import TrainTeacherConfig`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

# Re-exported: one import site for every group.
from dmospeech.config.codec import (CodecConfig, CodecSemanticConfig, DiscriminatorConfig,  # noqa: F401
                                    EncodeLatentsConfig, FastDecoderConfig, MelLossConfig, TrainCodecConfig,
                                    TrainFastDecoderConfig, WhisperFeatureConfig)
from dmospeech.config.compute import ComputeConfig  # noqa: F401
from dmospeech.config.critics import (ASRDistillConfig, LatentASRConfig, LatentMaskingConfig,  # noqa: F401
                                      PhoneHeadConfig, SpeakerTeachersConfig, SpeakerVerifierConfig,
                                      SpeedPerturbConfig, TrainASRCriticConfig, TrainSVCriticConfig)
from dmospeech.config.data import (CheckTranscriptsConfig, CutoffConfig, PhonemizeTextConfig, PrepareCorpusConfig,  # noqa: F401
                                   PrepareDemoCorpusConfig, ResampleAudioConfig, SegmentAudioConfig, SourceConfig,
                                   SpeechCheckConfig, SplitConfig, ValidateManifestConfig)
from dmospeech.config.evaluation import EvaluateConfig  # noqa: F401
from dmospeech.config.flows import GateRule, PipelineConfig, RetrainConfig  # noqa: F401
from dmospeech.config.parse import ConfigError, deep_merge, from_dict, read_yaml  # noqa: F401
from dmospeech.config.student import DistillStudentConfig, LatentDiscriminatorConfig  # noqa: F401
from dmospeech.config.teacher import (DiffusionConfig, DiTConfig, TeacherSamplerConfig,  # noqa: F401
                                      TrainTeacherConfig)
from dmospeech.config.training import OptimizerConfig, TrainLoopConfig  # noqa: F401


@dataclass(frozen=True)
class Params:
    prepare_demo_corpus: PrepareDemoCorpusConfig
    prepare_corpus: PrepareCorpusConfig
    resample_audio: ResampleAudioConfig
    segment_audio: SegmentAudioConfig
    phonemize_text: PhonemizeTextConfig
    check_transcripts: CheckTranscriptsConfig
    validate_manifest: ValidateManifestConfig
    train_codec: TrainCodecConfig
    train_fast_decoder: TrainFastDecoderConfig
    encode_latents: EncodeLatentsConfig
    train_teacher: TrainTeacherConfig
    train_asr_critic: TrainASRCriticConfig
    train_sv_critic: TrainSVCriticConfig
    distill_student: DistillStudentConfig
    evaluate: EvaluateConfig
    compute: ComputeConfig
    pipeline: PipelineConfig
    retrain: RetrainConfig

    def decoder_checkpoint_dir(self, decoder: Optional[str] = None) -> Optional[str]:
        """Where synthesis takes its decoder from: train_fast_decoder's out_dir for "fast", None
        (the model's own codec) for "codec"; `decoder` defaults to evaluate.decoder."""
        return self.train_fast_decoder.loop.out_dir if (decoder or self.evaluate.decoder) == "fast" else None

    def manifests(self) -> list[str]:
        """Every stage database of the data half, upstream first."""
        return [self.prepare_corpus.manifest, self.resample_audio.manifest,
                self.segment_audio.manifest, self.phonemize_text.manifest, self.check_transcripts.manifest]


def load_params(path: str | os.PathLike = "params.yaml", profile: str | os.PathLike | None = None) -> Params:
    """Parse `params.yaml` (optionally with a profile overlay) into `Params`."""
    data = read_yaml(path)
    if profile is not None:
        data = deep_merge(data, read_yaml(profile))
    try:
        return from_dict(Params, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
