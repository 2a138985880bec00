"""Every JSON the project writes is strict (no NaN/Infinity): undefined numbers are null with a
"<key>_undefined" reason next to them, and the retrain gate refuses a candidate whose gate metric is null."""
import json
import math

import numpy as np
import pytest

from dmospeech.config import GateRule
from dmospeech.evaluation.evaluate import write_metrics
from dmospeech.lineage.registry import apply_gate
from dmospeech.ops.atomic import dumps_strict, strict_json, write_json_atomic
from dmospeech.ops.checkpoint import flatten, unflatten


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_with_a_reason():
    out = strict_json({"a": math.nan, "b": math.inf, "c": -np.inf, "d": np.float32("nan"), "e": 1.5,
                       "f": np.float64(2.0), "g": np.int64(3), "h": [1.0, math.nan, np.array([0.5, np.inf])],
                       "nested": {"x": math.nan}})
    assert out == {"a": None, "a_undefined": "not finite (nan)", "b": None, "b_undefined": "not finite (inf)",
                   "c": None, "c_undefined": "not finite (-inf)", "d": None, "d_undefined": "not finite (nan)",
                   "e": 1.5, "f": 2.0, "g": 3, "h": [1.0, None, [0.5, None]],
                   "nested": {"x": None, "x_undefined": "not finite (nan)"}}
    assert type(out["f"]) is float and type(out["g"]) is int


def test_reasons_by_dotted_path_then_by_key_and_a_callers_reason_is_kept():
    obj = {"teacher": {"cv_f0": math.nan, "wer": math.nan}, "student": {"cv_f0": math.nan},
           "other": {"v": math.nan, "v_undefined": "mine"}}
    out = strict_json(obj, {"teacher.cv_f0": "teacher reason", "cv_f0": "generic reason"})
    assert out["teacher"] == {"cv_f0": None, "cv_f0_undefined": "teacher reason", "wer": None,
                              "wer_undefined": "not finite (nan)"}
    assert out["student"] == {"cv_f0": None, "cv_f0_undefined": "generic reason"}
    assert out["other"] == {"v": None, "v_undefined": "mine"}


def test_error_mode_names_the_non_finite_value():
    with pytest.raises(ValueError, match=r"copies\[1\]\.end_s is nan"):
        dumps_strict({"copies": [{"end_s": 1.0}, {"end_s": math.nan}]}, nonfinite="error")
    assert dumps_strict({"a": [1.0]}, nonfinite="error", indent=None) == '{"a": [1.0]}'


def test_written_file_is_strict_json(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "x.json", {"a": math.nan, "b": [math.inf], "c": {"d": -math.inf}})
    text = path.read_text()
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    assert strict_loads(text) == {"a": None, "a_undefined": "not finite (nan)", "b": [None],
                                  "c": {"d": None, "d_undefined": "not finite (-inf)"}}
    with pytest.raises(ValueError, match="non-strict"):
        strict_loads(json.dumps({"a": math.nan}))   # what the old writer produced


def test_default_converts_other_objects(tmp_path):
    assert strict_loads(dumps_strict({"p": tmp_path}, default=str)) == {"p": str(tmp_path)}
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps_strict({"p": tmp_path})


def test_evaluate_metrics_writer_gives_reasons(tmp_path):
    metrics = {"trials": 2, "decoder": "fast",
               "teacher": {"wer": 0.1, "cv_f0": math.nan, "wasserstein_f0": math.nan,
                           "wasserstein_f0_unconditional": math.nan, "wasserstein_energy": 3.0,
                           "prompt_correlation": {"pitch_mean": math.nan, "energy_mean": 0.5}},
               "student": {"wer": 0.2, "cv_f0": 0.4}, "speedup_teacher_over_student": 30.0}
    path = write_metrics(metrics, tmp_path / "metrics.json", cv_f0_trials=1)
    data = strict_loads(path.read_text())
    teacher = data["teacher"]
    assert teacher["cv_f0"] is None and teacher["cv_f0_undefined"] == "no voiced frames in any rendition of the 1 CV_f0 trial(s)"
    assert teacher["wasserstein_f0"] is None and "voiced frames" in teacher["wasserstein_f0_undefined"]
    assert teacher["wasserstein_f0_unconditional"] is None and "voiced" in teacher["wasserstein_f0_unconditional_undefined"]
    corr = teacher["prompt_correlation"]
    assert corr["pitch_mean"] is None and corr["pitch_mean_undefined"] == "only 2 trial(s): Pearson r needs 3"
    assert corr["energy_mean"] == 0.5 and "energy_mean_undefined" not in corr
    assert data["student"] == {"wer": 0.2, "cv_f0": 0.4} and teacher["wasserstein_energy"] == 3.0
    assert math.isnan(metrics["teacher"]["cv_f0"])   # the caller's dict is not changed
    many = strict_loads(write_metrics({"trials": 50, "student": {"prompt_correlation": {"hnr": math.nan}}},
                                      tmp_path / "m1.json", 1).read_text())["student"]["prompt_correlation"]
    assert many["hnr_undefined"] == ("fewer than 3 trials with periodic frames in both prompt and rendition, "
                                     "or hnr constant on one side (Pearson r undefined)")
    no_trials = strict_loads(write_metrics({"student": {"cv_f0": math.nan}}, tmp_path / "m2.json", 0).read_text())
    assert no_trials["student"]["cv_f0_undefined"] == "no CV_f0 trials (evaluate.cv_f0_trials is 0)"


RULES = (GateRule("student.wer", "lower", 0.01), GateRule("student.cv_f0", "lower", 0.05))
CURRENT = {"model_id": "student-1", "metrics": {"student.wer": 0.10, "student.cv_f0": 0.5}}


def test_gate_refuses_an_undefined_metric_with_its_reason(tmp_path):
    path = write_metrics({"student": {"wer": 0.1, "cv_f0": math.nan}}, tmp_path / "metrics.json", cv_f0_trials=2)
    candidate = strict_loads(path.read_text())
    for current in (CURRENT, None):   # a first promotion too
        gate = apply_gate(candidate, str(path), RULES, current)
        assert not gate.passed
        assert gate.reason == ("metric student.cv_f0 is undefined "
                               "(no voiced frames in any rendition of the 2 CV_f0 trial(s))")
        assert gate.values == {"student.wer": 0.1, "student.cv_f0": None}
    bare_null = apply_gate({"student": {"wer": None, "cv_f0": 0.5}}, "m.json", RULES, CURRENT)
    assert not bare_null.passed and bare_null.reason == "metric student.wer is undefined (null in m.json, no reason recorded)"
    old_nan = apply_gate(json.loads('{"student": {"wer": NaN, "cv_f0": 0.5}}'), "m.json", RULES, CURRENT)
    assert not old_nan.passed and old_nan.reason == "metric student.wer is undefined (NaN in m.json)"
    assert apply_gate({"student": {"wer": 0.1, "cv_f0": 0.5}}, "m.json", RULES, CURRENT).passed


def test_gate_against_a_current_model_with_an_undefined_metric():
    current = {"model_id": "old", "metrics": {"student.wer": 0.1, "student.cv_f0": None}}
    gate = apply_gate({"student": {"wer": 0.1, "cv_f0": 0.5}}, "m.json", RULES, current)
    assert not gate.passed and "current model old has an undefined student.cv_f0" in gate.reason


def test_checkpoint_state_keeps_non_finite_floats_in_strict_json():
    state = {"best": math.inf, "worst": -math.inf, "last": np.float32("nan"), "ok": (1.0, 2)}
    skeleton, tensors = flatten(state)
    back = unflatten(strict_loads(json.dumps(skeleton, allow_nan=False)), tensors)
    assert back["best"] == math.inf and back["worst"] == -math.inf and math.isnan(back["last"])
    assert back["ok"] == (1.0, 2)
