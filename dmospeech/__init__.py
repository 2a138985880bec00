"""dmospeech: a reproducible training pipeline for DMOSpeech (Li, Kumar, Jin, ICML 2025).

One package per pipeline component (config, ops, data, codec, teacher, critics, student, synthesis,
evaluation, lineage). The package root imports none of them, so loading any module loads only its
own component and earlier ones. The synthesis API: `from dmospeech.synthesis import TTS`.
"""

import os

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning: with several processes on few cores (a training
# stage next to a data stage, CI), spinning threads made training up to 10x slower. Read by libgomp
# when torch loads, so it only helps when dmospeech is imported first (the stages and scripts do).
OMP_WAIT_POLICY_GIVEN = "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def wait_actively_for_synthesis() -> None:
    """For a process that only synthesises (`dmospeech synthesize`, `dmospeech ui`): libgomp's own
    default (spin briefly, then sleep) instead of PASSIVE, under which the 4-step student's small
    matrix products ran ~1.4x slower on 2 cores (compare `OMP_WAIT_POLICY=PASSIVE python
    benchmarks/synthesis_speed.py` with a plain run). Only before torch loads (OpenMP reads the
    variable once) and only when the user did not set OMP_WAIT_POLICY."""
    import sys

    if not OMP_WAIT_POLICY_GIVEN and "torch" not in sys.modules:
        os.environ.pop("OMP_WAIT_POLICY", None)
