"""validate_manifest: gate training on the data half's manifests.

Reads params.yaml, validates the stage databases and the sources' scans (`dmospeech.data.validate`), writes
`validate_manifest.report_dir` (also on failure) and exits 1 naming every failed check.
"""
from __future__ import annotations

import sys
from pathlib import Path

from dmospeech.config import load_params
from dmospeech.data.gate_report import finish_gate
from dmospeech.data.validate import gated_manifests, validate_manifests
from dmospeech.data.text import Vocabulary


def main(params_path: str | Path = "params.yaml") -> int:
    """Validate the manifests named in `params_path`, write the report; 0 when every check passed."""
    params = load_params(params_path)
    cfg = params.validate_manifest
    vocab = Vocabulary.load(params.phonemize_text.vocab_path)
    report = validate_manifests(gated_manifests(params), cfg, sample_rate=params.resample_audio.sample_rate,
                                vocab_size=len(vocab), vocab_version=vocab.version)
    return finish_gate(report, cfg.report_dir)


if __name__ == "__main__":
    sys.exit(main())
