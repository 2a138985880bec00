"""Atomic writes: a temp file in the same folder, then rename, so a killed run never leaves a
half-written artifact. JSON is always strict (RFC 8259: no NaN or Infinity), see `strict_json`."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np

UNDEFINED_SUFFIX = "_undefined"   # "<key>_undefined": why "<key>" is null


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def strict_json(obj: Any, reasons: Mapping[str, str] | None = None, *,
                nonfinite: Literal["null", "error"] = "null", default: Callable[[Any], Any] | None = None) -> Any:
    """A copy of `obj` that `json.dumps(..., allow_nan=False)` accepts: numpy scalars and arrays become
    Python numbers and lists, tuples lists, and every non-finite float (NaN, +-inf, numpy's too) is

    - nonfinite="null" (reports, metrics): replaced by None; in a mapping, key K whose value was
      non-finite also gets the sibling key "K_undefined" (UNDEFINED_SUFFIX) holding the reason:
      `reasons[dotted path]` ("teacher.cv_f0"), else `reasons[K]`, else "not finite (nan|inf|-inf)".
      A "K_undefined" the caller already put there is kept. In a list, a non-finite item becomes
      null without a reason (a list has no place for one);
    - nonfinite="error" (data read back as numbers: caches, stats, run configs): ValueError naming
      where it is.

    `default`, as json.dumps's, turns other objects into JSON-able ones (its result is converted too)."""
    reasons = reasons or {}

    def finite(x: float, where: str) -> float | None:
        if math.isfinite(x):
            return x
        if nonfinite == "error":
            raise ValueError(f"{where or '<root>'} is {x!r}: strict JSON has no NaN or Infinity")
        return None

    def walk(x: Any, where: str) -> Any:
        if isinstance(x, (np.generic, np.ndarray)):
            x = x.tolist() if isinstance(x, np.ndarray) else x.item()
        if x is None or isinstance(x, (str, bool, int)):
            return x
        if isinstance(x, float):
            return finite(float(x), where)
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, Mapping):
            out: dict = {}
            for k, v in x.items():
                path = f"{where}.{k}" if where else str(k)
                out[k] = walk(v, path)
                if out[k] is None and isinstance(v, (float, np.floating)) and not math.isfinite(v):
                    note = f"{k}{UNDEFINED_SUFFIX}"
                    if note not in x:
                        out[note] = reasons.get(path) or reasons.get(str(k)) or f"not finite ({float(v)!r})"
            return out
        if default is not None:
            return walk(default(x), where)
        raise TypeError(f"{where or '<root>'}: object of type {type(x).__name__} is not JSON serializable")

    return walk(obj, "")


def dumps_strict(obj: Any, indent: int | None = 2, reasons: Mapping[str, str] | None = None, *,
                 nonfinite: Literal["null", "error"] = "null", default: Callable[[Any], Any] | None = None,
                 sort_keys: bool = False) -> str:
    """`json.dumps` of `strict_json(obj, ...)` with allow_nan=False (no trailing newline)."""
    return json.dumps(strict_json(obj, reasons, nonfinite=nonfinite, default=default), indent=indent,
                      allow_nan=False, sort_keys=sort_keys)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2,
                      reasons: Mapping[str, str] | None = None, *, nonfinite: Literal["null", "error"] = "null",
                      default: Callable[[Any], Any] | None = None) -> Path:
    """`obj` as strict JSON (`dumps_strict`) plus a newline, written atomically."""
    return write_text_atomic(path, dumps_strict(obj, indent, reasons, nonfinite=nonfinite, default=default) + "\n")
