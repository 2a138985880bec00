"""Figures of the evaluation: F0 histograms per model (the paper's Figure 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def f0_histogram_png(f0: Mapping[str, Sequence[np.ndarray]], path: str | Path, bins: int = 40) -> Path:
    """Overlaid densities of voiced-frame F0 per model (ground truth, teacher, student), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    pooled = {k: np.concatenate([c for c in v if len(c)]) for k, v in f0.items() if any(len(c) for c in v)}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if pooled:
        values = np.concatenate(list(pooled.values()))
        edges = np.linspace(np.percentile(values, 1), np.percentile(values, 99) + 1e-6, bins + 1)
        for name, v in pooled.items():
            ax.hist(v, bins=edges, density=True, histtype="step", linewidth=1.5, label=f"{name} ({len(v)} frames)")
        ax.legend(fontsize=8)
    ax.set_xlabel("F0 (Hz), voiced frames")
    ax.set_ylabel("density")
    ax.set_title("F0 distributions (cf. Figure 2)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
