from __future__ import annotations

import pytest

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig, SlurmSSHConfig
from xm_slurm.resources import ResourceType


@pytest.fixture
def cluster() -> SlurmClusterConfig:
    return SlurmClusterConfig(
        name="testcluster",
        ssh=SlurmSSHConfig(host="login.example.org", user="me"),
        runtime=ContainerRuntime.PODMAN,
        account="acct",
        partition="debug",
        qos="normal",
        resources={ResourceType.A100: "a100", ResourceType.H100: "shard:h100"},
        features={ResourceType.L40S: "l40s_node"},
    )
