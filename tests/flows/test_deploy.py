"""The retrain deployment carries the cron schedule from params.yaml, served or on a work pool."""
import pytest

from dmospeech.config import load_params
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_deployment_schedule_comes_from_params():
    from flows.deploy import deploy_to_pool, deployment
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    cron = load_params(PROJECT_ROOT / "params.yaml").retrain.schedule
    served = deployment(PROJECT_ROOT)
    assert [s.schedule.cron for s in served.schedules] == [cron] and served.parameters["root"] == str(PROJECT_ROOT)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="test-pool", type="process"))
        deployment_id = deploy_to_pool(PROJECT_ROOT, "test-pool", str(PROJECT_ROOT))
        stored = client.read_deployment(deployment_id)
    assert stored.work_pool_name == "test-pool" and stored.entrypoint == "flows/retrain.py:retrain_flow"
    assert [s.schedule.cron for s in stored.schedules] == [cron] and stored.global_concurrency_limit.limit == 1
