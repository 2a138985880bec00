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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
