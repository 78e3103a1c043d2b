"""Shared by the transport tests: an SSH config for the local test cluster."""

from __future__ import annotations

from local_cluster import LocalCluster

from xm_slurm.ssh_config import SlurmSSHConfig


def ssh_config_for(cluster: LocalCluster, **overrides: object) -> SlurmSSHConfig:
    fields: dict[str, object] = {
        "host": cluster.ssh_host,
        "port": cluster.ssh_port,
        "user": cluster.ssh_user,
        "client_keys": (cluster.ssh_key,),
        "known_hosts": cluster.known_hosts,
        "config_files": (),  # ignore the developer's own ~/.ssh/config
    }
    fields.update(overrides)
    return SlurmSSHConfig(**fields)  # type: ignore[arg-type]
