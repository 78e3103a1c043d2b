"""Recording an experiment's provenance at launch, once per experiment and distinct context (see
`provenance`), and choosing its run identity (`rendering.run_identity`).

The launcher calls `ProvenanceRecorder.prepare(submissions)` after its read-only checks and before it renders
the scripts: the artifacts are written before any sbatch (a store that refuses them fails the batch, as it
would refuse the job rows), and the returned `RunIdentity` goes into every script.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xm_slurm.api import Artifact, XManagerAPI
from xm_slurm.executables.secret import is_secret
from xm_slurm.experiment import provenance as p
from xm_slurm.experiment import provenance_git
from xm_slurm.experiment.planning import Submission
from xm_slurm.experiment.tracking import RunTracking, find_mlflow_runs
from xm_slurm.rendering.run_identity import RunIdentity, run_id
from xm_slurm.version import version

#: Names of this process's environment variables whose values count as secrets (searched for and redacted).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


def launch_secrets(submissions: Sequence[Submission]) -> set[str]:
    """Every secret value a launch knows: env values marked `Secret` (image, job, trial, cluster),
    registry passwords, and this process's environment values whose names say secret (the REST token)."""
    found: set[str] = set()

    def env(values: Mapping[str, Any]) -> None:
        found.update(v for v in values.values() if is_secret(v))

    for s in submissions:
        env(s.cluster.container_environment)
        env(s.cluster.host_environment)
        for c in s.components:
            env(c.env_vars)
            env(c.executable.env_vars)
            if c.executable.credentials is not None:
                found.add(c.executable.credentials.password)
        for t in s.trials:
            env(t.env_vars)
    # Found by name only: short values (TOKEN_TYPE=bearer) are likely words, not secrets.
    found.update(v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8)
    return found


def _versions() -> dict[str, str]:
    try:
        xmanager = importlib.metadata.version("xmanager")
    except importlib.metadata.PackageNotFoundError:
        xmanager = "unknown"
    return {"xm_slurm": version(), "xmanager": xmanager, "python": platform.python_version()}


def _script() -> dict[str, Any]:
    """The launch script: `sys.argv[0]` (a module run with -m included), when it is a readable file."""
    path = sys.argv[0] if sys.argv else ""
    if not path or path in ("-c", "-") or not os.path.isfile(path):
        return {"script_path": None, "script": "", "script_note": "no launch script file (interactive or -c)"}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(p.SCRIPT_CAP * 2)
    except OSError as e:
        return {"script_path": os.path.abspath(path), "script": "", "script_note": f"unreadable: {e}"}
    text, cut = p.cap(text, p.SCRIPT_CAP, "launch script")
    return {
        "script_path": os.path.abspath(path),
        "script": text,
        "script_truncated": cut,
        "script_cap": p.SCRIPT_CAP,
    }


def launch_record() -> dict[str, Any]:
    return {"argv": list(sys.argv), "cwd": os.getcwd(), "versions": _versions(), **_script()}


class ProvenanceRecorder:
    """One per launcher: what this experiment has recorded, and its run namespace."""

    def __init__(self, client: XManagerAPI, experiment_id: int) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.tracking: RunTracking | None = None
        self._known: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    def seed(self, artifacts: Mapping[str, str]) -> None:
        """The experiment's artifacts as stored (a new experiment: none), so `prepare` need not read them."""
        self._known = {k: v for k, v in artifacts.items() if k.startswith(p.PREFIX)}

    async def _artifacts(self) -> dict[str, str]:
        if self._known is None:
            record = await self.client.aget_experiment(self.experiment_id)
            self.seed({a.name: a.uri for a in record.artifacts})
        assert self._known is not None
        return self._known

    async def _put(self, name: str, text: str) -> None:
        await self.client.ainsert_experiment_artifact(self.experiment_id, Artifact(name=name, uri=text))
        assert self._known is not None
        self._known[name] = text

    async def _put_new(self, base: str, value: Mapping[str, Any], secret_values: Iterable[str]) -> None:
        text = p.to_text(value, secret_values)
        name = p.unique_name(await self._artifacts(), base, text)
        if name is not None:
            await self._put(name, text)

    async def prepare(self, submissions: Sequence[Submission]) -> RunIdentity:
        """Record what is new about this launch; the run identity every script of it gets."""
        async with self._lock:
            known = await self._artifacts()
            namespace = known.get(p.NAMESPACE)
            if namespace is None:
                namespace = secrets.token_hex(4)
                await self._put(p.NAMESPACE, namespace)
            hidden = launch_secrets(submissions)
            await self._put_new(p.LAUNCH, launch_record(), hidden)
            images = p.parse(known.get(p.IMAGES, "{}"))
            listed = list(images.get("images", [])) if isinstance(images, dict) else []
            contexts: dict[str, p.CodeState | None] = {}
            for s in submissions:
                for c in s.components:
                    state = provenance_git.state_of(c.executable.image)
                    entry = {
                        "name": c.executable.name,
                        "image": c.executable.image,
                        "context": state and state[0],
                    }
                    if entry not in listed:
                        listed.append(entry)
                    if state is not None:
                        contexts.setdefault(state[0], state[1])
            for context, code in sorted(contexts.items()):
                value = code.to_json() if code is not None else {"context": context, "git": False}
                await self._put_new(p.code_artifact_name(context), value, hidden)
            text = p.to_text({"images": listed}, hidden)
            if known.get(p.IMAGES) != text:
                await self._put(p.IMAGES, text)
            mlflow = await self._mlflow(namespace, submissions)
        tracking = self.tracking or RunTracking()
        return RunIdentity(
            namespace=namespace,
            wandb=tracking.wandb,
            mlflow_tracking_uri=tracking.mlflow_tracking_uri,
            mlflow_run_ids=mlflow,
        )

    async def _mlflow(self, namespace: str, submissions: Sequence[Submission]) -> dict[int, str]:
        tracking = self.tracking
        if tracking is None or not tracking.mlflow_tracking_uri:
            return {}
        xid = self.experiment_id
        ids = {t.work_unit_id: run_id(namespace, xid, t.work_unit_id) for s in submissions for t in s.trials}
        prefix = f"xm-{namespace}-{xid}-"
        return await asyncio.to_thread(find_mlflow_runs, tracking, prefix, ids)


__all__ = ["ProvenanceRecorder", "launch_record", "launch_secrets"]
