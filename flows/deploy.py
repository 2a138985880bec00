"""The retrain flow's deployment: cron from params `retrain.schedule`, one run at a time.

    python -m flows.deploy serve                   one machine: this process runs the schedule
    python -m flows.deploy deploy --pool gpu-pool  a cluster: workers of a Prefect work pool run it

Run either from the project root, with PREFECT_API_URL pointing at a Prefect server for `deploy`.
"""
from __future__ import annotations

import flows  # noqa: F401  (telemetry off before prefect is imported)

import argparse
from pathlib import Path

from prefect import serve

from dmospeech.config import load_params
from flows.retrain import retrain_flow

NAME = "retrain"
ENTRYPOINT = "flows/retrain.py:retrain_flow"


def deployment(root: Path, params_path: str = "params.yaml"):
    """The served deployment (a RunnerDeployment) of the retrain flow for the project at `root`."""
    cfg = load_params(root / params_path).retrain
    return retrain_flow.to_deployment(name=NAME, cron=cfg.schedule, concurrency_limit=1,
                                      parameters={"root": str(root), "params_path": params_path},
                                      description="Retrain when the sources change; promote through the gate.")


def deploy_to_pool(root: Path, pool: str, source: str, params_path: str = "params.yaml"):
    """Register the deployment with work pool `pool`; its workers get the code from `source` (a git URL,
    or the project folder on a shared filesystem) and run the flow on the project at `root`."""
    cfg = load_params(root / params_path).retrain
    return retrain_flow.from_source(source=source, entrypoint=ENTRYPOINT).deploy(
        name=NAME, work_pool_name=pool, cron=cfg.schedule, concurrency_limit=1, build=False, push=False,
        parameters={"root": str(root), "params_path": params_path})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("how", choices=["serve", "deploy"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pool", help="work pool name (deploy)")
    parser.add_argument("--source", help="where workers get the code (deploy; default: this project folder)")
    args = parser.parse_args()
    root = Path.cwd()
    if args.how == "serve":
        serve(deployment(root, args.params))
    elif not args.pool:
        parser.error("deploy needs --pool (create one with `prefect work-pool create <name> --type process`)")
    else:
        deploy_to_pool(root, args.pool, args.source or str(root), args.params)


if __name__ == "__main__":
    main()
