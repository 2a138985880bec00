"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout of one checkpoint (written as `<out_dir>/step_<n>.tmp/`, then renamed to `step_<n>/`, then
`<out_dir>/latest` is atomically replaced with the text `step_<n>`):

    run_config.json          what the caller needs to rebuild the models (train(..., run_config))
    <part>.safetensors       model weights of each part (keys as in `module.state_dict()`)
    <part>.ema.safetensors   EMA weights of parts trained with EMA
    state.json               training state skeleton: step, data position, optimizers, RNG, ...
    state.safetensors        the tensors `state.json` refers to

A killed writer leaves at most a `*.tmp` folder, which is ignored and removed by the next save.
`flatten`/`unflatten` turn any nested dict/list/tuple of tensors, arrays and JSON scalars (such as
an optimizer or LR-scheduler state dict) into a JSON skeleton plus a flat dict of tensors and back.
Both JSON files are strict (no NaN/Infinity): a non-finite float of the state is tagged, losslessly.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import safetensors.torch
import torch

from dmospeech.ops.atomic import dumps_strict, write_text_atomic

_STEP_DIR = re.compile(r"^step_(\d+)$")
_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__")


# ----------------------------------------------------------------------------- flatten / unflatten
def flatten(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """`(skeleton, tensors)`: `skeleton` is JSON-serialisable; each tensor (or numpy array) is
    replaced by `{"__tensor__": key}` (`{"__ndarray__": key, "dtype": ...}`) with `tensors[key]`
    holding it. Tuples, dicts with non-string keys and non-finite floats (`{"__float__": "nan"}`, strict
    JSON has no NaN/Infinity) are tagged so `unflatten` restores them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            key = _unique(path, tensors)
            tensors[key] = x
            return {"__tensor__": key}
        if isinstance(x, np.ndarray):
            key = _unique(path, tensors)
            tensors[key] = torch.from_numpy(np.ascontiguousarray(x).astype(np.int64 if x.dtype.kind in "iub"
                                                                         else np.float64))
            return {"__ndarray__": key, "dtype": x.dtype.str}
        if isinstance(x, np.generic):
            return walk(x.item(), path)
        if isinstance(x, float) and not math.isfinite(x):
            return {"__float__": repr(float(x))}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if isinstance(x, Mapping):
            if all(isinstance(k, str) and k not in _MARKERS for k in x):
                return {k: walk(v, f"{path}.{k}") for k, v in x.items()}
            for k in x:
                if not (k is None or isinstance(k, (str, int, float, bool))):
                    raise TypeError(f"flatten: key {k!r} at '{path}' is not a JSON scalar")
            return {"__dict__": [[k, walk(v, f"{path}.{k}")] for k, v in x.items()]}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"flatten: cannot store {type(x).__name__} at '{path}' without pickle")

    return walk(obj, prefix), tensors


def unflatten(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `flatten`."""
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__ndarray__" in skeleton:
        return tensors[skeleton["__ndarray__"]].numpy().astype(np.dtype(skeleton["dtype"]))
    if "__float__" in skeleton:
        return float(skeleton["__float__"])
    if "__tuple__" in skeleton:
        return tuple(unflatten(v, tensors) for v in skeleton["__tuple__"])
    if "__dict__" in skeleton:
        return {k: unflatten(v, tensors) for k, v in skeleton["__dict__"]}
    return {k: unflatten(v, tensors) for k, v in skeleton.items()}


def _unique(path: str, taken: Mapping[str, Any]) -> str:
    key, n = path.lstrip("."), 1
    while key in taken:
        key, n = f"{path.lstrip('.')}#{n}", n + 1
    return key


# ----------------------------------------------------------------------------- writing
def _cpu(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors that share no storage (safetensors refuses shared or strided storage). A CPU
    tensor that alone fills its contiguous storage is written as it is: copying every tensor would hold a
    second copy of the whole state (AdamW moments of a 500M model: +4 GB at each checkpoint)."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v, storage = v.detach(), v.untyped_storage()
        whole = v.storage_offset() == 0 and storage.nbytes() == v.numel() * v.element_size()
        if v.device.type == "cpu" and v.is_contiguous() and whole and v.numel() and storage.data_ptr() not in seen:
            out[k] = v
        else:
            out[k] = v.to("cpu", copy=True, memory_format=torch.contiguous_format)
        seen.add(storage.data_ptr())
    return out


def _write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> None:
    safetensors.torch.save_file(_cpu(tensors), str(path), metadata=metadata)
    _fsync(path)


def _write_json(path: Path, obj: Any) -> None:
    """Strict JSON; a non-finite float raises (flatten tags the state's; run configs must be finite)."""
    path.write_text(dumps_strict(obj, indent=1, nonfinite="error"), encoding="utf-8")
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(out_dir: str | os.PathLike, step: int, weights: Mapping[str, Mapping[str, torch.Tensor]],
                    state: Any, run_config: dict, keep: int) -> Path:
    """Write `<out_dir>/step_<step>/` atomically, point `latest` at it, keep the newest `keep`
    checkpoints (`keep <= 0` keeps all). `weights` maps file stem (`"net"`, `"net.ema"`) to a
    state dict; `state` is any nested structure `flatten` accepts. Returns the folder."""
    out_dir = Path(out_dir)
    final, tmp = out_dir / f"step_{step}", out_dir / f"step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"step": str(step)}
    for stem, sd in weights.items():
        _write_safetensors(tmp / f"{stem}.safetensors", sd, meta)
    skeleton, tensors = flatten(state)
    _write_safetensors(tmp / "state.safetensors", tensors, meta)
    _write_json(tmp / "state.json", skeleton)
    _write_json(tmp / "run_config.json", run_config)
    if final.exists():  # the same step saved again (e.g. a rerun after the final checkpoint)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(out_dir)
    write_text_atomic(out_dir / "latest", final.name + "\n")
    prune_checkpoints(out_dir, keep)
    return final


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Remove `*.tmp` leftovers and all but the newest `keep` checkpoints (never the latest)."""
    for tmp in out_dir.glob("step_*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    if keep <= 0:
        return
    latest = latest_checkpoint(out_dir)
    for old in _step_dirs(out_dir)[:-keep]:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- reading
def _step_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    found = [(int(m.group(1)), p) for p in out_dir.glob("step_*") if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "state.json").is_file() and (p / "run_config.json").is_file()]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete `<out_dir>/step_<n>/`, or None. This is the folder `latest` names,
    unless a writer was killed between the rename (the commit point) and the pointer update."""
    out_dir = Path(out_dir)
    dirs = _step_dirs(out_dir) if out_dir.is_dir() else []
    return dirs[-1] if dirs else None


def read_run_config(checkpoint_dir: str | os.PathLike) -> dict:
    """The `run_config` a checkpoint was trained with."""
    return json.loads((Path(checkpoint_dir) / "run_config.json").read_text(encoding="utf-8"))


def read_state(checkpoint_dir: str | os.PathLike) -> Any:
    """The training state saved by `save_checkpoint`, tensors on CPU."""
    checkpoint_dir = Path(checkpoint_dir)
    skeleton = json.loads((checkpoint_dir / "state.json").read_text(encoding="utf-8"))
    return unflatten(skeleton, safetensors.torch.load_file(str(checkpoint_dir / "state.safetensors")))


def load_part_weights(checkpoint_dir: str | os.PathLike, part: str, ema: bool = True) -> dict[str, torch.Tensor]:
    """State dict of one part (EMA weights by default), loadable with `module.load_state_dict`."""
    path = Path(checkpoint_dir) / (f"{part}.ema.safetensors" if ema else f"{part}.safetensors")
    if not path.is_file():
        have = sorted(p.name for p in Path(checkpoint_dir).glob("*.safetensors"))
        hint = " (this part was trained without EMA: pass ema=False)" if ema else ""
        raise FileNotFoundError(f"{path} does not exist{hint}; the checkpoint holds {have}")
    return safetensors.torch.load_file(str(path))


def check_run_config(checkpoint_dir: Path, run_config: dict) -> None:
    """Raise if `run_config` differs from the one stored with `checkpoint_dir`."""
    stored, current = read_run_config(checkpoint_dir), json.loads(json.dumps(run_config))
    if stored == current:
        return
    diffs = _differences(stored, current)
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:8]) + (" ..." if len(diffs) > 8 else "")
    raise RuntimeError(f"cannot resume from {checkpoint_dir}: the run configuration changed ({shown}). "
                       f"Delete {checkpoint_dir.parent} to start over, or restore the params it was trained with.")


def _differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [(path or "<root>", a, b)]
