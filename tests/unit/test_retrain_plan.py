"""The retrain flow's plan is checked against dvc.yaml before any work is done."""
from dataclasses import replace

import pytest

from flows.pipeline import stage_order
from flows.retrain import check_plan
from tests.helpers import PROJECT_ROOT, params


def test_the_project_plan_names_every_training_stage_after_the_data_half():
    order = stage_order(PROJECT_ROOT)
    assert order[check_plan(params(), order)] == params().retrain.data_until


def test_a_training_stage_left_out_of_retrain_models_is_reported_before_any_work():
    p = params()
    only_codec = replace(p, retrain=replace(p.retrain, models={"train_codec": "resume"}))
    with pytest.raises(ValueError, match="missing: \\['train_fast_decoder', 'train_teacher', 'train_asr_critic', "
                                         "'train_sv_critic', 'distill_student'\\]"):
        check_plan(only_codec, stage_order(PROJECT_ROOT))
    with pytest.raises(ValueError, match="does not define"):
        check_plan(replace(p, retrain=replace(p.retrain, models={"train_vocoder": "retrain"})),
                   stage_order(PROJECT_ROOT))
