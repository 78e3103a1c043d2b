"""0.4.7 launch scripts' preset calls bind to ours and do what they did (compat-04x.md, "Presets"):
`mila(*, user, partition, mounts)`, `drac.narval/beluga/graham(*, user, account, proxy, mounts)`,
`cedar(*, user, account, mounts)`, `cc` as an alias of `drac`, `drac.all()`; Mila's scratch at /scratch with
SCRATCH=/scratch, DRAC's robot login with a pinned key and its module loads.

One difference is on purpose (0.5.0's rule, docs/clusters.md): mounts passed to a preset are added to its
own instead of replacing them.
"""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.contrib.clusters import cc, drac
from xm_slurm.contrib.clusters.factory import RetiredSiteWarning
from xm_slurm.contrib.clusters.mila import mila
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script
from xm_slurm.resources import JobRequirements

MOUNTS = {"/home/me/data": "/data"}


@pytest.fixture(autouse=True)
def _retired_sites_warn_quietly() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetiredSiteWarning)
        yield


def _call_047(function: Callable[..., SlurmClusterConfig], **kwargs: Any) -> SlurmClusterConfig:
    """Bind as 0.4.7's signature would (keywords only), then call."""
    bound = inspect.signature(function).bind(**kwargs)
    return function(*bound.args, **bound.kwargs)


def _script(cluster: SlurmClusterConfig) -> str:
    executor = Slurm(requirements=JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(hours=1))
    job = JobComponent(
        executable=RemoteImage(image="registry.example.org/img:1", entrypoint=["python"]), executor=executor
    )
    return render_job_script(
        JobScriptRequest(
            cluster=cluster,
            jobs=[job],
            trials=[Trial(work_unit_id=1)],
            experiment_id=7,
            job_name="compat",
            state_dir="/home/me/.local/state/xm-slurm",
        )
    )


def _container_exports(script: str) -> list[str]:
    """The `export NAME=value` lines of the one task's container entrypoint (decoded from its payload)."""
    [payload] = re.findall(r"^xm_payload_0='([A-Za-z0-9+/=]+)'$", script, re.MULTILINE)
    entrypoint = base64.b64decode(payload).decode()
    return re.findall(r"^export (\S+)$", entrypoint, re.MULTILINE)


def _binds(script: str) -> list[str]:
    return re.findall(r"--bind=\"?([^\" ]+)\"?", script)


def test_mila_047_keywords_bind_and_work() -> None:
    cluster = _call_047(mila, user="me", partition="long", mounts=MOUNTS)
    assert cluster.ssh.user == "me"
    script = _script(cluster)
    assert "#SBATCH --partition=long" in script
    assert "/home/me/data:/data:rw" in _binds(script)
    # 0.4.7: the user's scratch at /scratch, SCRATCH and the state folder set in the container.
    assert "/network/scratch/${USER:0:1}/$USER:/scratch:rw" in _binds(script)
    assert any(b.endswith(":/xm-slurm-state:rw") for b in _binds(script))
    exports = _container_exports(script)
    assert "SCRATCH=/scratch" in exports and "XM_SLURM_STATE_DIR=/xm-slurm-state" in exports


def test_mila_without_partition_sends_none() -> None:
    assert "--partition" not in _script(_call_047(mila, user="me"))


@pytest.mark.parametrize("name", ["narval", "beluga", "graham"])
def test_drac_047_keywords_with_proxy_bind_and_work(name: str) -> None:
    function = getattr(drac, name)
    cluster = _call_047(function, user="me", account="def-pi", proxy="submission-host", mounts=MOUNTS)
    assert (cluster.ssh.user, cluster.account, cluster.proxy) == ("me", "def-pi", "submission-host")
    # 0.4.7: logs in to the robot node with the site's pinned key.
    assert cluster.ssh.host == f"robot.{name}.alliancecan.ca" and cluster.ssh.host_public_key is not None
    script = _script(cluster)
    assert "#SBATCH --account=def-pi" in script
    # proxy="submission-host": a SOCKS tunnel to the submission host, no httpproxy module.
    assert re.findall(r"^module load .*$", script, re.MULTILINE) == ["module load apptainer"]
    assert '"${SLURM_SUBMIT_HOST}"' in script and "ALL_PROXY" in script
    assert "/home/me/data:/data:rw" in _binds(script)
    assert "/scratch/$USER:/scratch:rw" in _binds(script)  # added to the preset's, not replacing them


@pytest.mark.parametrize("name", ["narval", "beluga"])
def test_drac_default_proxy_loads_httpproxy_without_a_tunnel(name: str) -> None:
    script = _script(_call_047(getattr(drac, name), user="me"))
    assert re.findall(r"^module load .*$", script, re.MULTILINE) == ["module load apptainer httpproxy"]
    assert "ALL_PROXY" not in script


def test_graham_tunnels_through_the_submission_host_by_default() -> None:
    cluster = _call_047(drac.graham, user="me")
    assert cluster.proxy == "submission-host"
    assert '"${SLURM_SUBMIT_HOST}"' in _script(cluster)


def test_cedar_047_keywords_bind_and_proxy_does_not() -> None:
    cluster = _call_047(drac.cedar, user="me", account="def-pi", mounts=MOUNTS)
    assert (cluster.ssh.user, cluster.account, cluster.proxy) == ("me", "def-pi", None)
    with pytest.raises(TypeError):
        inspect.signature(drac.cedar).bind(user="me", proxy="submission-host")


def test_cc_is_drac_under_its_047_name() -> None:
    assert cc.narval is drac.narval and cc.all is drac.all
    assert _call_047(cc.narval, user="me").name == "narval"


def test_drac_all_is_047s_four_clusters_and_warns_for_the_retired_ones() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        configs = drac.all()
    assert [c.name for c in configs] == ["narval", "beluga", "cedar", "graham"]
    [warning] = caught  # one, pointing at the caller's line
    assert warning.category is RetiredSiteWarning and warning.filename == __file__
    assert "retired clusters beluga, cedar, graham" in str(warning.message)


@pytest.mark.parametrize("bad", ["", "two words"])
def test_a_bad_proxy_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"proxy={bad!r}")):
        drac.narval(proxy=bad)
