"""Resampling to 48 kHz mono FLAC: rate, length, statistics, normalisation, incremental reruns."""
from dataclasses import replace

import numpy as np
import pandas as pd
import soundfile as sf

from dmospeech.ops import audio as A
from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.ingest import merge_sources, scan_rows
from dmospeech.data.manifest import Lineage
from dmospeech.data.resample import condition_file, resample_corpus
from tests.helpers import params, voiced, write


def test_condition_file_is_48k_mono_with_original_stats(tmp_path):
    stereo = np.stack([voiced(2.0, sr=22050), voiced(2.0, sr=22050, seed=1)], axis=1) + 0.05
    path = write(tmp_path / "x.wav", stereo.astype(np.float32), sr=22050)
    out, info = condition_file(str(path), params().resample_audio)
    assert info["sample_rate"] == 48000 and info["orig_sample_rate"] == 22050 and info["orig_channels"] == 2
    assert abs(len(out) - 2.0 * 48000) <= 2 and abs(info["duration_s"] - 2.0) < 1e-3
    assert abs(info["dc_offset"] - 0.05) < 0.01  # measured on the original
    assert abs(np.mean(out)) < 1e-3  # removed
    assert abs(A.dbfs(np.abs(out).max()) - params().resample_audio.peak_dbfs) < 0.05


def test_soxr_keeps_a_tone_at_its_frequency():
    sr = 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    up = A.resample(tone, sr, 48000)
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * 48000 / len(up) - 440) < 2
    assert spectrum[np.fft.rfftfreq(len(up), 1 / 48000) > 8500].max() < 1e-3 * spectrum.max()


def test_loudness_normalisation_reaches_target_without_clipping():
    audio = voiced(3.0, sr=48000, level=0.05)
    gain = A.normalization_gain_db(audio, 48000, "loudness", -1.0, -23.0)
    assert abs(A.loudness_lufs(A.apply_gain(audio, gain), 48000) - -23.0) < 0.2
    loud = voiced(3.0, sr=48000, level=0.9)
    assert np.abs(A.apply_gain(loud, A.normalization_gain_db(loud, 48000, "loudness", -1.0, -5.0))).max() <= 0.892


def test_rerun_reuses_outputs_and_removes_stale_files(tmp_path):
    for i in range(2):
        write(tmp_path / "c" / "s" / f"{i}.wav", voiced(1.0, seed=i))
        (tmp_path / "c" / "s" / f"{i}.txt").write_text("text")
    lineage = Lineage.for_stage("resample_audio", params().resample_audio)
    files, _ = merge_sources(scan_rows(SourceConfig("x", "sidecar", str(tmp_path / "c")), (".wav",), lineage),
                             SplitConfig(), lineage)
    audio, _ = resample_corpus(files, params().resample_audio, lineage, project_root=tmp_path)
    flacs = [tmp_path / p for p in audio.audio_path]
    mtimes = [f.stat().st_mtime_ns for f in flacs]
    again, _ = resample_corpus(files, params().resample_audio, lineage, project_root=tmp_path)
    assert [f.stat().st_mtime_ns for f in flacs] == mtimes
    pd.testing.assert_frame_equal(audio.drop(columns="created_at"), again.drop(columns="created_at"))
    assert all(sf.info(str(f)).samplerate == 48000 and sf.info(str(f)).channels == 1 for f in flacs)
    resample_corpus(files.iloc[:1], params().resample_audio, lineage, project_root=tmp_path)
    assert flacs[0].exists() and not flacs[1].exists()


def test_changed_params_reprocess(tmp_path):
    write(tmp_path / "c" / "s" / "a.wav", voiced(1.0))
    (tmp_path / "c" / "s" / "a.txt").write_text("text")
    cfg = params().resample_audio
    lin = Lineage.for_stage("resample_audio", cfg)
    files, _ = merge_sources(scan_rows(SourceConfig("x", "sidecar", str(tmp_path / "c")), (".wav",), lin),
                             SplitConfig(), lin)
    first, _ = resample_corpus(files, cfg, lin, project_root=tmp_path)
    cfg2 = replace(cfg, peak_dbfs=-6.0)
    second, _ = resample_corpus(files, cfg2, Lineage.for_stage("resample_audio", cfg2), project_root=tmp_path)
    assert first.audio_path[0] != second.audio_path[0]
    assert abs(second.gain_db[0] - first.gain_db[0] + 5.0) < 1e-6
