"""Prefect flows over the DVC pipeline: `flows.pipeline` (the stages in dvc.yaml order) and
`flows.retrain` (scheduled retraining with a promotion gate); `flows.deploy` serves or deploys it.

Importing this package turns Prefect's, DVC's and GX's telemetry off unless the caller already set
the variables (it must run before `prefect` is imported, which these modules guarantee).
"""
import os

for _key, _value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
                     "GX_ANALYTICS_ENABLED": "false"}.items():
    os.environ.setdefault(_key, _value)
