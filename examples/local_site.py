"""The site-specific part of every example: the local test cluster made by `scripts/local-cluster up`.

The examples import their cluster config and image names from here, so each `launch.py` reads as it would
on a real cluster. On yours, replace `local_site.cluster()` with your own config or a preset
(`xm_slurm.contrib.clusters.narval("me", account="def-mypi")`), `local_site.image_tag(...)` with a
repository you can push to, and `local_site.python_image()` with the base image you build on.

Everything comes from the `XM_TEST_*` variables of `.local-cluster/env.sh`:

    source .local-cluster/env.sh && uv run python examples/<example>/launch.py
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from xmanager import xm

import xm_slurm


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(
            f"{name} is not set: run `source .local-cluster/env.sh` first (scripts/local-cluster up)"
        )
    return value


def cluster(**overrides: Any) -> xm_slurm.SlurmClusterConfig:
    """The local cluster (Podman runtime); `overrides` are SlurmClusterConfig fields (mounts=...)."""
    config = xm_slurm.SlurmClusterConfig(
        name="local",
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        partition=_env("XM_TEST_SLURM_PARTITION"),
        ssh=xm_slurm.SlurmSSHConfig(
            host=_env("XM_TEST_SSH_HOST"),
            port=int(_env("XM_TEST_SSH_PORT")),
            user=_env("XM_TEST_SSH_USER"),
            client_keys=(_env("XM_TEST_SSH_KEY"),),
            known_hosts=_env("XM_TEST_SSH_KNOWN_HOSTS"),
            config_files=(),
        ),
    )
    return dataclasses.replace(config, **overrides) if overrides else config


def python_image() -> str:
    """A Debian image with python3 (no pip) in the local registry: the base the examples build on."""
    return _env("XM_TEST_PYTHON_IMAGE")


def image_tag(name: str) -> str:
    """Where an example pushes the image it builds."""
    return f"{_env('XM_TEST_REGISTRY')}/xm-examples/{name}:latest"


def shared_folder(name: str) -> str:
    """A folder the jobs and this machine both see (the local cluster IS this machine)."""
    root = os.environ.get("XM_EXAMPLES_SHARED_DIR") or os.path.join(tempfile.gettempdir(), "xm-examples")
    path = os.path.join(root, name)
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def trust_host_certificates() -> None:
    """Let this process's `podman build`s reach PyPI through a TLS-intercepting proxy only the host trusts.

    Mounts the host's CA bundle into build steps (and tells uv to use it) with a private containers.conf.
    A no-op where the host has no CA bundle. Real sites with plain internet access do not need this.
    """
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file() or shutil.which("podman") is None:
        return
    base = Path(os.environ.get("CONTAINERS_CONF") or "/etc/containers/containers.conf")
    text = base.read_text() if base.is_file() else ""
    folder = Path(tempfile.mkdtemp(prefix="xm-examples-podman-"))
    # The bundle goes where OpenSSL-style lookups find it but no package writes (/etc/ssl/certs is
    # ca-certificates' own); pip is pointed at it by /etc/pip.conf, uv by /etc/uv/uv.toml (system certs).
    # containers.conf `env` would not reach build steps; mounts do.
    ca = "/etc/pki/tls/certs/ca-bundle.crt"
    (folder / "pip.conf").write_text(f"[global]\ncert = {ca}\n")
    (folder / "uv.toml").write_text("system-certs = true\n")
    mounts = [
        f"{bundle}:{ca}:ro",
        f"{folder}/pip.conf:/etc/pip.conf:ro",
        f"{folder}/uv.toml:/etc/uv/uv.toml:ro",
    ]
    extra = "volumes = [" + ", ".join(f'"{m}"' for m in mounts) + "]\n"
    if "[containers]" in text:
        text = text.replace("[containers]\n", "[containers]\n" + extra, 1)
    else:
        text = "[containers]\n" + extra + text
    (folder / "containers.conf").write_text(text)
    os.environ["CONTAINERS_CONF"] = str(folder / "containers.conf")


def _uv_binary() -> str:
    """The uv executable (not a pyenv shim) that runs these examples."""
    candidates = []
    found = shutil.which("uv")
    if found:
        pyenv = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True, check=False)
        if pyenv.returncode == 0:
            candidates.append(pyenv.stdout.strip())
        candidates.append(found)
    try:
        import uv  # type: ignore[import-not-found]

        candidates.append(uv.find_uv_bin())
    except (ImportError, AttributeError, FileNotFoundError):  # AttributeError: examples/uv, not the package
        pass
    for path in candidates:
        with open(path, "rb") as f:
            if f.read(4) == b"\x7fELF":
                return path
    raise SystemExit("no uv executable found on this machine to put in the local uv image")


def uv_image() -> xm.Packageable:
    """A packageable of an image holding just `/uv`: what `uv_container(uv_image=...)` copies uv from.

    Real sites use `ghcr.io/astral-sh/uv:<version>`; the local cluster has no access to ghcr.io, so the
    image is built from the uv that runs these examples.
    """
    binary = _uv_binary()
    context = Path(tempfile.gettempdir(), f"xm-examples-uv-image-{os.getuid()}")
    context.mkdir(mode=0o700, exist_ok=True)
    target = context / "uv"
    if not target.exists() or target.stat().st_size != os.stat(binary).st_size:  # ~40 MB: copy once
        shutil.copy(binary, target)
    (context / "Dockerfile").write_text('FROM scratch\nCOPY uv /uv\nCMD ["/uv"]\n')
    return xm_slurm.docker_container(xm_slurm.Slurm.Spec(tag=image_tag("uv")), context=context)


def controller_cluster(base: xm_slurm.SlurmClusterConfig) -> xm_slurm.SlurmClusterConfig:
    """`base` as a parameter controller's job needs it on the local cluster, without building an image.

    The controller runs xm_slurm inside its container. At a real site that is your project's image (it
    depends on xmanager-slurm) and ~/.ssh and the state folder come with $HOME (Apptainer mounts it). Here
    the cluster IS this machine, so the job mounts, at the same paths: this virtual environment and checkout
    (xm_slurm and its dependencies; the image's python3 is the same 3.11), the SQLite store's folder, and
    the SSH key and known_hosts the recorded jobs name.
    """
    from xm_slurm.api.storage.engine import default_sqlite_path

    site_packages = sysconfig.get_paths()["purelib"]
    checkout = str(Path(xm_slurm.__file__).resolve().parent.parent)
    store = str(default_sqlite_path().expanduser().resolve().parent)
    os.makedirs(store, mode=0o700, exist_ok=True)
    ssh_files = {
        os.path.dirname(path) for path in (*base.ssh.client_keys, base.ssh.known_hosts or "") if path
    }
    mounts = {**base.mounts, site_packages: site_packages, checkout: checkout, store: store}
    mounts.update({folder: folder for folder in ssh_files})
    environment = {**base.container_environment, "PYTHONPATH": f"{site_packages}:{checkout}"}
    return dataclasses.replace(base, mounts=mounts, container_environment=environment)
