"""Evaluation measures: Praat F0 on tones of known pitch, CV_f0 and Wasserstein on hand-computed
cases, WER normalisation, prosody features and their correlations, the rules for degenerate audio,
the local-folder evaluators, and a few real recordings from the dev corpus."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from dmospeech.evaluation import metrics as M
from dmospeech.ops.audio import decode_audio, to_mono
from dmospeech.evaluation.prosody import ENERGY_FLOOR_DB
from tests.helpers import params, voiced

SR = 16000


def tone(f0: float, seconds: float = 1.0, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * f0 * np.arange(int(seconds * sr)) / sr)


# ---- F0 and energy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sr", [16000, 48000])
def test_f0_of_a_pure_tone_is_its_frequency(sr):
    f0 = M.f0_contour(tone(200.0, sr=sr), sr)
    assert len(f0) > 80
    np.testing.assert_allclose(f0, 200.0, rtol=0.01)


def test_f0_of_a_harmonic_voiced_signal_is_its_fundamental():
    f0 = M.f0_contour(voiced(1.0, SR, f0=140.0), SR)
    assert len(f0) > 80
    np.testing.assert_allclose(f0, 140.0, rtol=0.01)


def test_f0_track_marks_silence_unvoiced_and_contour_keeps_voiced_frames():
    audio = np.concatenate([tone(200.0, 0.5), np.zeros(SR // 2)])
    track = M.f0_track(audio, SR)
    assert abs(len(track) - 100) <= 4                      # 10 ms frames over 1 s
    assert (track[:40] > 0).all() and (track[-40:] == 0).all()
    np.testing.assert_array_equal(M.f0_contour(audio, SR), track[track > 0])
    assert M.f0_contour(np.zeros(SR), SR).size == 0


def test_log_energy_is_rms_level_in_db():
    energy = M.log_energy(tone(220.0, amplitude=0.5), SR)
    assert abs(len(energy) - 101) <= 1                     # centred 10 ms frames
    assert abs(np.median(energy) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.1   # -9.03 dB
    np.testing.assert_allclose(M.log_energy(np.zeros(SR), SR), ENERGY_FLOOR_DB)


# ---- CV_f0 (sec 4.4) -------------------------------------------------------------------------------

def test_cv_f0_is_zero_for_identical_renditions_and_grows_with_pitch_variation():
    track = M.f0_track(voiced(1.0, SR, f0=140.0), SR)
    assert M.cv_f0([track] * 5) == 0.0
    rng = np.random.default_rng(0)
    values = [M.cv_f0([track * (1 + spread * rng.standard_normal()) for _ in range(8)]) for spread in (0.02, 0.05, 0.1)]
    assert 0 < values[0] < values[1] < values[2]


def test_cv_f0_of_tones_equals_std_over_mean():
    tracks = [M.f0_track(tone(f), SR) for f in (180.0, 200.0, 220.0)]
    expected = np.std([180.0, 200.0, 220.0]) / 200.0      # 0.0816
    assert M.cv_f0(tracks) == pytest.approx(expected, rel=0.01)


def test_cv_f0_voicing_rule_by_hand():
    a, b = np.array([200.0, 200.0, 200.0, 0.0, 0.0]), np.array([200.0, 200.0, 200.0, 200.0, 0.0])
    # default: frame 3 is (0, 200) Hz -> CV 1, frames 0-2 -> 0, frame 4 is not speech: mean 0.25
    assert M.cv_f0([a, b]) == pytest.approx(0.25)
    assert M.cv_f0([a, b], voiced_only=True) == 0.0
    assert M.cv_f0([a, b[:4], np.r_[b, 150.0]]) == pytest.approx(np.mean([0, 0, 0, np.std([0, 200, 200]) / (400 / 3)]))
    assert math.isnan(M.cv_f0([np.zeros(5), np.zeros(5)]))
    with pytest.raises(ValueError, match="at least 2 renditions"):
        M.cv_f0([a])
    with pytest.raises(ValueError, match="rendition 1"):
        M.cv_f0([a, np.array([200.0, np.nan])])


# ---- Wasserstein (appendix A) ----------------------------------------------------------------------

def test_wasserstein_of_identical_samples_is_zero_and_of_shifted_samples_the_shift():
    x = np.random.default_rng(1).normal(180.0, 20.0, 500)
    assert M.wasserstein(x, x) == 0.0
    assert M.wasserstein(x, x + 7.5) == pytest.approx(7.5)
    assert M.wasserstein(x, np.random.default_rng(2).permutation(x)) == 0.0


def test_conditional_averages_pairs_and_unconditional_pools():
    rng = np.random.default_rng(3)
    a = [rng.normal(0, 1, 300), rng.normal(50, 1, 300), np.zeros(0)]
    b = [a[0] + 1.0, a[1] + 3.0, rng.normal(0, 1, 10)]
    assert M.conditional_wasserstein(a, b) == pytest.approx(2.0)          # (1 + 3) / 2, empty pair skipped
    # pooled: the two clusters stay apart, so the pooled distance is the mean shift, 2.0 as well;
    # swapping the pairing changes the conditional distance but not the pooled one
    assert M.unconditional_wasserstein(a[:2], b[:2]) == pytest.approx(2.0)
    assert M.conditional_wasserstein(a[:2], b[1::-1]) > 40
    assert M.unconditional_wasserstein(a[:2], b[1::-1]) == pytest.approx(2.0)
    assert M.unconditional_wasserstein(a[:2], [a[0]]) > 20               # lists may differ in length
    assert math.isnan(M.conditional_wasserstein([np.zeros(0)], [np.ones(3)]))
    assert math.isnan(M.unconditional_wasserstein([np.zeros(0)], [np.ones(3)]))
    with pytest.raises(ValueError, match="got 2 and 1 items"):
        M.conditional_wasserstein(a[:2], b[:1])
    with pytest.raises(ValueError, match="non-empty"):
        M.wasserstein(np.zeros(0), np.ones(3))


# ---- WER (sec 4.2) ---------------------------------------------------------------------------------

def test_wer_normalisation():
    assert M.normalize_for_wer("Hello, World!") == "hello world"
    assert M.word_error_rate(["hello world"], ["Hello, World!"]) == 0.0
    assert M.word_error_rate(["the cat sat down"], ["The dog sat down."]) == 0.25
    assert M.word_error_rate(["it is twenty-five percent, Mr. Smith"], ["It's 25% mister smith"]) == 0.0
    assert M.normalize_for_wer("dated (which was printed) [noise] in fourteen sixty-two") == \
        "dated which was printed in 1462"
    assert M.normalize_for_wer("and me...") == "and me"        # Whisper's normaliser alone leaves "and me ."
    assert M.word_error_rate(["there for"], ["there for..."]) == 0.0
    # corpus level: 1 error over 4 + 2 reference words
    assert M.word_error_rate(["a b x d", "e f"], ["a b c d", "e f"]) == pytest.approx(1 / 6)
    assert M.word_error_rate([""], ["two words"]) == 1.0


def test_wer_spelling_table_and_errors(tmp_path):
    table = tmp_path / "normalizer.json"
    table.write_text(json.dumps({"colour": "color"}))
    assert M.english_normalizer(str(table))("The Colour!") == "the color"
    assert M.normalize_for_wer("The Colour!") == "the colour"
    with pytest.raises(FileNotFoundError, match="normalizer.json of a Whisper"):
        M.english_normalizer(str(tmp_path / "absent.json"))
    with pytest.raises(ValueError, match="empty after normalisation"):
        M.word_error_rate(["a", "b"], ["a", "[noise]"])
    with pytest.raises(ValueError, match="1 hypotheses and 2 references"):
        M.word_error_rate(["a"], ["a", "b"])


# ---- prosody features (appendix B) -----------------------------------------------------------------

def test_prosody_features_of_a_voiced_signal():
    features = M.prosody_features(voiced(1.5, SR, f0=140.0), SR)
    assert set(features) == set(M.PROSODY_KEYS)
    assert all(np.isfinite(v) for v in features.values()), features
    assert features["pitch_mean"] == pytest.approx(140.0, rel=0.01)
    assert features["hnr"] > 10 and 0 <= features["jitter"] < 0.01 and 0 <= features["shimmer"] < 0.2
    silent = M.prosody_features(np.zeros(SR), SR)
    assert silent["energy_mean"] == ENERGY_FLOOR_DB
    assert all(math.isnan(silent[k]) for k in ("pitch_mean", "pitch_std", "hnr", "jitter", "shimmer"))


def test_prompt_correlations_by_hand():
    def features(pitch_mean, energy_mean):
        return {**dict.fromkeys(M.PROSODY_KEYS, 1.0), "pitch_mean": pitch_mean, "energy_mean": energy_mean}

    prompts = [features(p, e) for p, e in [(100, -20), (150, -25), (200, -30), (250, math.nan)]]
    generated = [features(2 * p + 5, -e) for p, e in [(100, -20), (150, -25), (200, -30), (250, -10)]]
    r = M.prompt_correlations(prompts, generated)
    assert r["pitch_mean"] == pytest.approx(1.0)
    assert r["energy_mean"] == pytest.approx(-1.0)                       # 3 pairs left after dropping NaN
    assert math.isnan(r["hnr"])                                          # constant: r undefined
    assert all(math.isnan(v) for v in M.prompt_correlations(prompts[:2], generated[:2]).values())
    with pytest.raises(ValueError, match="2 prompts and 1 generated"):
        M.prompt_correlations(prompts[:2], generated[:1])
    with pytest.raises(ValueError, match="lacks 'pitch_mean'"):
        M.prompt_correlations([{}] * 3, generated[:3])


# ---- degenerate audio ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [M.f0_track, M.f0_contour, M.log_energy, M.prosody_features])
def test_clear_errors_for_unusable_audio(fn):
    with pytest.raises(ValueError, match="empty audio"):
        fn(np.zeros(0), SR)
    with pytest.raises(ValueError, match=r"shape \(t,\)"):
        fn(np.zeros((2, SR)), SR)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn(np.r_[tone(200.0), np.nan], SR)
    with pytest.raises(ValueError, match="sample rate must be positive"):
        fn(tone(200.0), 0)


def test_pitch_analysis_refuses_audio_shorter_than_its_window():
    with pytest.raises(ValueError, match="30.0 ms is shorter than the 40 ms"):
        M.prosody_features(tone(200.0, 0.03), SR)
    assert len(M.f0_contour(tone(200.0, 0.04), SR)) == 1
    assert len(M.log_energy(tone(200.0, 0.005), SR)) == 1                # energy needs no window


# ---- evaluators from local folders -----------------------------------------------------------------

def test_missing_local_evaluators_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"HuBERT-CTC recogniser folder .*absent does not exist.*whisper"):
        M.HubertRecognizer(tmp_path / "absent")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="lacks preprocessor_config.json, vocab.json"):
        M.HubertRecognizer(tmp_path / "partial")
    with pytest.raises(FileNotFoundError, match=r"WavLM speaker encoder folder .*absent does not exist.*Resemblyzer"):
        M.WavLMEncoder(tmp_path / "absent")


@pytest.mark.slow
def test_local_hubert_and_wavlm_folders_load_offline(tmp_path):
    """Randomly initialised tiny models saved like the real ones: loading, decoding and embedding."""
    import torch
    from transformers import (HubertConfig, HubertForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Processor, WavLMConfig, WavLMForXVector)

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
                 conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    HubertForCTC(HubertConfig(vocab_size=len(vocab), pad_token_id=0, **small)).save_pretrained(tmp_path / "hubert")
    Wav2Vec2Processor(feature_extractor=features, tokenizer=Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
                      ).save_pretrained(tmp_path / "hubert")
    WavLMForXVector(WavLMConfig(tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=6,
                                num_buckets=8, max_bucket_distance=16, **small)).save_pretrained(tmp_path / "wavlm")
    features.save_pretrained(tmp_path / "wavlm")

    recognizer = M.HubertRecognizer(tmp_path / "hubert")
    text = recognizer(voiced(0.5, 22050), 22050)
    assert recognizer.model_name == "hubert-ctc:hubert" and set(text) <= {"A", "B", " "}
    encoder = M.WavLMEncoder(tmp_path / "wavlm")
    audio = voiced(1.0, SR)
    assert encoder.name == "wavlm" and encoder.embed(audio, SR).shape == (6,)
    assert M.speaker_similarity(encoder, audio, SR, audio, SR) == pytest.approx(1.0)


# ---- real speech (dev corpus) ----------------------------------------------------------------------

def load(path) -> tuple[np.ndarray, int]:
    decoded = decode_audio(path)
    return to_mono(decoded.audio), decoded.sample_rate


def test_real_speech_sim_pitch_and_features(dev_corpus):
    lj1, lj2 = (load(dev_corpus / "ljspeech" / "wavs" / f"LJ001-000{i}.wav") for i in (1, 3))
    male = load(dev_corpus / "arctic" / "audio" / "arctic_aew_a0001.wav")
    encoder = M.ResemblyzerEncoder()
    assert encoder.name == "resemblyzer"
    same, different = M.speaker_similarity(encoder, *lj1, *lj2), M.speaker_similarity(encoder, *lj1, *male)
    assert same > different + 0.1, (same, different)
    assert np.median(M.f0_contour(*lj1)) > np.median(M.f0_contour(*male)) + 40
    for audio, sr in (lj1, male):
        assert all(np.isfinite(v) for v in M.prosody_features(audio, sr).values())


def test_packaged_whisper_on_real_speech(dev_corpus):
    from dmospeech.data.transcribe import Transcriber

    recognizer: M.Recognizer = Transcriber(replace(params().segment_audio, cpu_threads=1))
    clips = [("LJ001-0002", "in being comparatively modern."),
             ("LJ001-0008", "has never been surpassed.")]
    hypotheses = [recognizer(*load(dev_corpus / "ljspeech" / "wavs" / f"{c}.wav")) for c, _ in clips]
    assert recognizer.model_name == "base"
    assert M.word_error_rate(hypotheses, [t for _, t in clips]) == 0.0, hypotheses
