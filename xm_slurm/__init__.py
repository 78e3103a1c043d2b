"""xm_slurm: a Slurm backend for XManager.

Every public name is importable as `xm_slurm.X`; modules are imported on first use (PEP 562) so that
`import xm_slurm` stays fast (XManager, asyncssh, Jinja and SQLAlchemy load only when needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # experiments
    "create_experiment": "xm_slurm.experiment.access",
    "get_experiment": "xm_slurm.experiment.access",
    "get_current_experiment": "xm_slurm.experiment.access",
    "get_current_work_unit": "xm_slurm.experiment.access",
    "SlurmExperiment": "xm_slurm.experiment.experiment",
    "SlurmWorkUnit": "xm_slurm.experiment.units",
    "SlurmAuxiliaryUnit": "xm_slurm.experiment.units",
    "SlurmExperimentUnit": "xm_slurm.experiment.units",
    "SlurmLaunchedJob": "xm_slurm.experiment.handles",
    "local_transport_factory": "xm_slurm.experiment.connections",
    "JobArgs": "xm_slurm.types",
    # executors, resources, cluster config
    "Slurm": "xm_slurm.executors",
    "SlurmSpec": "xm_slurm.executors",
    "JobRequirements": "xm_slurm.resources",
    "ResourceQuantity": "xm_slurm.resources",
    "ResourceType": "xm_slurm.resources",
    "Topology": "xm_slurm.topology",
    "SlurmClusterConfig": "xm_slurm.config",
    "ContainerRuntime": "xm_slurm.config",
    "MountSpec": "xm_slurm.config",
    "MountKind": "xm_slurm.config",
    "MountMode": "xm_slurm.config",
    "nvidia_mounts": "xm_slurm.config",
    "infiniband_mounts": "xm_slurm.config",
    "SlurmSSHConfig": "xm_slurm.ssh_config",
    "PublicKey": "xm_slurm.ssh_config",
    "SSHConfig": "xm_slurm.ssh_config",
    "Endpoint": "xm_slurm.ssh_config",
    # executables and packageables
    "Dockerfile": "xm_slurm.executables",
    "DockerImage": "xm_slurm.executables",
    "RemoteImage": "xm_slurm.executables",
    "Secret": "xm_slurm.executables.secret",
    "RunTracking": "xm_slurm.experiment.tracking",
    "docker_image": "xm_slurm.packageables",
    "docker_container": "xm_slurm.packageables",
    "python_container": "xm_slurm.packageables",
    "uv_container": "xm_slurm.packageables",
    "mamba_container": "xm_slurm.packageables",
    "conda_container": "xm_slurm.packageables",
    # dependencies and states
    "SlurmDependency": "xm_slurm.dependencies",
    "SlurmJobDependency": "xm_slurm.dependencies",
    "SlurmJobState": "xm_slurm.status",
    "SlurmWorkUnitStatus": "xm_slurm.status",
    "SlurmWorkUnitStatusEnum": "xm_slurm.status",
    "XmSlurmError": "xm_slurm.errors",
}
_SUBMODULES = frozenset(
    {
        "api",
        "config",
        "dependencies",
        "errors",
        "executables",
        "executors",
        "contrib",
        "experiment",
        "experimental",
        "job_blocks",
        "packageables",
        "resources",
        "ssh_config",
        "status",
        "types",
    }
)

__all__ = [
    "ContainerRuntime",
    "DockerImage",
    "Dockerfile",
    "Endpoint",
    "JobArgs",
    "JobRequirements",
    "MountKind",
    "MountMode",
    "MountSpec",
    "PublicKey",
    "RemoteImage",
    "ResourceQuantity",
    "ResourceType",
    "RunTracking",
    "SSHConfig",
    "Secret",
    "Slurm",
    "SlurmAuxiliaryUnit",
    "SlurmClusterConfig",
    "SlurmDependency",
    "SlurmExperiment",
    "SlurmExperimentUnit",
    "SlurmJobDependency",
    "SlurmJobState",
    "SlurmLaunchedJob",
    "SlurmSSHConfig",
    "SlurmSpec",
    "SlurmWorkUnit",
    "SlurmWorkUnitStatus",
    "SlurmWorkUnitStatusEnum",
    "Topology",
    "XmSlurmError",
    "__version__",
    "api",
    "conda_container",
    "config",
    "create_experiment",
    "dependencies",
    "docker_container",
    "docker_image",
    "errors",
    "executables",
    "executors",
    "experiment",
    "get_current_experiment",
    "get_current_work_unit",
    "get_experiment",
    "infiniband_mounts",
    "job_blocks",
    "local_transport_factory",
    "mamba_container",
    "nvidia_mounts",
    "packageables",
    "python_container",
    "resources",
    "ssh_config",
    "status",
    "types",
    "uv_container",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the distribution's metadata on first use (xm_slurm.version)
        from xm_slurm.version import version

        return version()
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"xm_slurm.{name}")
    raise AttributeError(f"module 'xm_slurm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily
    from xm_slurm import (
        api,
        config,
        dependencies,
        errors,
        executables,
        executors,
        experiment,
        job_blocks,
        packageables,
        resources,
        ssh_config,
        status,
        types,
    )
    from xm_slurm.config import (
        ContainerRuntime,
        MountKind,
        MountMode,
        MountSpec,
        SlurmClusterConfig,
        infiniband_mounts,
        nvidia_mounts,
    )
    from xm_slurm.dependencies import SlurmDependency, SlurmJobDependency
    from xm_slurm.errors import XmSlurmError
    from xm_slurm.executables import Dockerfile, DockerImage, RemoteImage
    from xm_slurm.executables.secret import Secret
    from xm_slurm.executors import Slurm, SlurmSpec
    from xm_slurm.experiment.access import (
        create_experiment,
        get_current_experiment,
        get_current_work_unit,
        get_experiment,
    )
    from xm_slurm.experiment.connections import local_transport_factory
    from xm_slurm.experiment.experiment import SlurmExperiment
    from xm_slurm.experiment.handles import SlurmLaunchedJob
    from xm_slurm.experiment.tracking import RunTracking
    from xm_slurm.experiment.units import SlurmAuxiliaryUnit, SlurmExperimentUnit, SlurmWorkUnit
    from xm_slurm.packageables import (
        conda_container,
        docker_container,
        docker_image,
        mamba_container,
        python_container,
        uv_container,
    )
    from xm_slurm.resources import JobRequirements, ResourceQuantity, ResourceType
    from xm_slurm.ssh_config import Endpoint, PublicKey, SlurmSSHConfig, SSHConfig
    from xm_slurm.status import SlurmJobState, SlurmWorkUnitStatus, SlurmWorkUnitStatusEnum
    from xm_slurm.topology import Topology
    from xm_slurm.types import JobArgs
    from xm_slurm.version import __version__
