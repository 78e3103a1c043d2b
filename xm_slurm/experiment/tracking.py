"""Opt-in run tracking: W&B and MLflow continue one run per work unit across requeues (docs/provenance.md).

    experiment.tracking = xm_slurm.RunTracking(wandb=True)
    experiment.tracking = xm_slurm.RunTracking(mlflow_tracking_uri="https://mlflow.example.org")

`wandb=True`: every task gets `WANDB_RUN_ID` (its `XM_SLURM_RUN_ID`) and `WANDB_RESUME=allow`.
`mlflow_tracking_uri`: every task gets `MLFLOW_TRACKING_URI`; at launch, the MLflow server is asked (one
`runs/search` through its REST API) for runs named after the work units' run ids (name your run
`os.environ["XM_SLURM_RUN_ID"]`); a work unit whose run exists gets `MLFLOW_RUN_ID`, which `mlflow.start_run()`
continues. The server is only asked when this is set; an unreachable server is a warning, not an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from xm_slurm.errors import ValidationError
from xm_slurm.text_rules import check_line

log = logging.getLogger(__name__)

MLFLOW_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunTracking:
    """Which trackers' run identity the experiment's jobs get (see the module docstring)."""

    wandb: bool = False
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None  # an MLflow experiment name; None: the default experiment ("0")

    def __post_init__(self) -> None:
        if not isinstance(self.wandb, bool):
            raise ValidationError(f"RunTracking(wandb={self.wandb!r}) must be True or False")
        uri = self.mlflow_tracking_uri
        if uri is not None:
            check_line(uri, "RunTracking.mlflow_tracking_uri")
            if not uri.startswith(("http://", "https://")):
                raise ValidationError(
                    f"RunTracking(mlflow_tracking_uri={uri!r}) must be an http:// or https:// URL of an "
                    "MLflow tracking server"
                )
        if self.mlflow_experiment is not None:
            check_line(self.mlflow_experiment, "RunTracking.mlflow_experiment")


def _headers() -> dict[str, str]:
    # MLflow's own client variables for a protected server (never recorded anywhere).
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def find_mlflow_runs(tracking: RunTracking, prefix: str, run_ids: Mapping[int, str]) -> dict[int, str]:
    """wid -> MLflow run id of the work units whose run (named `run_ids[wid]`) exists on the server.

    `prefix` is what every name starts with (one `LIKE` search). Blocking: call it in a worker thread."""
    import httpx

    uri = tracking.mlflow_tracking_uri
    if not uri or not run_ids:
        return {}
    base = uri.rstrip("/") + "/api/2.0/mlflow"
    auth = None
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        auth = httpx.BasicAuth(user, password)
    wanted = {name: wid for wid, name in run_ids.items()}
    found: dict[int, str] = {}
    try:
        with httpx.Client(timeout=MLFLOW_TIMEOUT_S, headers=_headers(), auth=auth) as http:
            experiment_id = "0"
            if tracking.mlflow_experiment:
                got = http.get(
                    f"{base}/experiments/get-by-name", params={"experiment_name": tracking.mlflow_experiment}
                )
                if got.status_code == 404:
                    return {}  # no such experiment yet: no run to continue
                got.raise_for_status()
                experiment_id = str(got.json()["experiment"]["experiment_id"])
            token = None
            while True:
                body: dict[str, object] = {
                    "experiment_ids": [experiment_id],
                    "filter": f"attributes.run_name LIKE '{prefix}%'",
                    "max_results": 1000,
                }
                if token:
                    body["page_token"] = token
                answer = http.post(f"{base}/runs/search", json=body)
                answer.raise_for_status()
                data = answer.json()
                for run in data.get("runs", []):
                    info = run.get("info", {})
                    wid = wanted.get(info.get("run_name", ""))
                    if wid is not None and info.get("lifecycle_stage", "active") == "active":
                        found.setdefault(wid, info["run_id"])
                token = data.get("next_page_token")
                if not token:
                    return found
    except (httpx.HTTPError, ValueError, KeyError) as e:
        # The server's answer is not shown whole: it may echo request headers.
        log.warning(
            "MLflow server %s: cannot look up runs to continue (%s); jobs start new runs",
            uri,
            type(e).__name__,
        )
        return {}


class TrackingSetting:
    """`experiment.tracking`: the `RunTracking` of the jobs the experiment launches from now on (None: no
    tracker variables), kept by its launcher."""

    def __get__(self, experiment: Any, owner: type | None = None) -> RunTracking | None:
        return None if experiment is None else experiment.launcher.provenance.tracking

    def __set__(self, experiment: Any, value: RunTracking | None) -> None:
        if value is not None and not isinstance(value, RunTracking):
            raise ValidationError(f"tracking={value!r} must be an xm_slurm.RunTracking or None")
        experiment.launcher.provenance.tracking = value


__all__ = ["RunTracking", "TrackingSetting", "find_mlflow_runs"]
