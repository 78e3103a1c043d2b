"""The table of sites is the one source of the presets: the factory, the public functions and the registry agree
with it; the 0.4.7 keywords and names (`mounts=`, `proxy=`, `cc`, `drac.all()`) come out of the same factory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from xm_slurm.config import MountMode, MountSpec, SlurmClusterConfig
from xm_slurm.contrib import clusters
from xm_slurm.contrib.clusters import cc, drac
from xm_slurm.contrib.clusters.factory import build
from xm_slurm.contrib.clusters.sites import SITES, Site
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script
from xm_slurm.resources import JobRequirements, ResourceType

# Retired sites warn when built; their warning has its own test (test_site_facts.py).
pytestmark = pytest.mark.filterwarnings("ignore::xm_slurm.contrib.clusters.factory.RetiredSiteWarning")

# A value for the options a preset may take, each different from the site's default (`runtime` is set per
# site; `validate` has tests of its own in test_preset_directives.py).
OPTION_VALUES: dict[str, Any] = {
    "account": "def-pi",
    "partition": "gpubase",
    "qos": "normal",
    "host": "robot.example.org",
    "port": 2022,
    "proxy": "submission-host",
    "mounts": {"/home/me/data": "/data"},
}


def _function(name: str) -> Callable[..., SlurmClusterConfig]:
    return getattr(clusters, name.replace("-", "_"))


def _options(site: Site) -> dict[str, Any]:
    options = {k: v for k, v in OPTION_VALUES.items() if k in site.options}
    if "runtime" in site.options:
        options["runtime"] = next(r for r in type(site.runtime) if r is not site.runtime)
    return options


def _targets(cluster: SlurmClusterConfig) -> dict[str, str]:
    return {m.target: m.source for m in cluster.mount_specs}


def _facts(cluster: SlurmClusterConfig) -> dict[str, Any]:
    facts = {f.name: getattr(cluster, f.name) for f in dataclasses.fields(cluster) if f.name != "validate"}
    facts["validate"] = getattr(cluster.validate, "__name__", None)
    return facts


@pytest.mark.parametrize("name", list(SITES))
def test_every_site_builds_a_valid_config_carrying_its_facts(name: str) -> None:
    site = SITES[name]
    cluster = build(site)
    assert isinstance(cluster, SlurmClusterConfig)
    assert cluster.name == site.name
    assert (cluster.ssh.endpoints, cluster.ssh.user) == (site.endpoints, None)
    assert cluster.ssh.public_key == site.host_public_key
    assert cluster.runtime == site.runtime
    assert cluster.prolog is not None and cluster.prolog.split()[2:3] == list(site.modules)
    assert dict(cluster.host_environment) == dict(site.host_environment)
    assert dict(cluster.container_environment) == dict(site.container_environment)
    assert tuple(cluster.mount_specs) == site.mounts
    for kind, gres in site.gres.items():  # each named type `ResourceType` has
        if kind in ResourceType.__members__:
            assert cluster.resources[ResourceType[kind]] == gres
    assert (cluster.account, cluster.partition, cluster.qos) == (None, None, None)
    assert cluster.proxy == site.default_proxy
    has_limits = site.max_time is not None or bool(site.gpus_per_task)
    assert (cluster.validate is not None) == has_limits
    # A real config: `replace` validates it again.
    assert dataclasses.replace(cluster, account="def-pi").account == "def-pi"


@pytest.mark.parametrize("name", list(SITES))
def test_every_option_of_the_table_reaches_the_config(name: str) -> None:
    site = SITES[name]
    options = _options(site)
    cluster = build(site, "me", **options)
    assert cluster.ssh.user == "me"
    for option in ("account", "partition", "qos", "proxy", "runtime"):
        if option in options:
            assert getattr(cluster, option) == options[option]
    assert cluster.ssh.host == options["host"]
    assert cluster.ssh.port == options.get("port")
    assert _targets(cluster)["/data"] == "/home/me/data"


def test_the_registry_and_the_public_functions_cover_exactly_the_table() -> None:
    assert list(clusters.PRESETS) == list(SITES)
    assert clusters.names() == sorted(SITES)
    for name, site in SITES.items():
        entry = clusters.PRESETS[name]
        assert entry.site is site
        assert entry.factory is _function(name)
        assert (entry.family, entry.source) == (site.family, site.source)
        assert entry.retired is (site.retired is not None)
        assert entry.compute_internet is site.compute_internet
        assert entry.factory.__module__.startswith("xm_slurm.contrib.clusters.")


@pytest.mark.parametrize("name", list(SITES))
def test_public_function_signature_is_the_tables_options(name: str) -> None:
    site = SITES[name]
    parameters = inspect.signature(_function(name)).parameters
    assert next(iter(parameters)) == "user" and parameters["user"].default is None
    assert set(parameters) - {"user"} == set(site.options)
    # Where the function states a default of its own, it is the table's.
    if "port" in parameters:
        assert parameters["port"].default == site.endpoints[0].port
    if "runtime" in parameters:
        assert parameters["runtime"].default is site.runtime
    for option in set(site.options) - {"port", "runtime"}:
        assert parameters[option].default is None, f"{name}: {option}"


@pytest.mark.parametrize("name", list(SITES))
def test_public_function_registry_and_factory_build_the_same_config(name: str) -> None:
    site, function = SITES[name], _function(name)
    assert _facts(function()) == _facts(clusters.by_name(name)) == _facts(build(site))
    assert _facts(function()) != _facts(function("me", **_options(site)))
    options = _options(site)
    built = _facts(function("me", **options))
    assert built == _facts(clusters.by_name(name, "me", **options)) == _facts(build(site, "me", **options))


@pytest.mark.parametrize("name", list(SITES))
def test_docstring_names_the_tables_login_and_gpu_names(name: str) -> None:
    # The docstrings carry the sources of the table's facts: a fact changed in one place only shows here.
    site = SITES[name]
    doc = inspect.getdoc(_function(name)) or ""
    assert f"`{site.login}`" in doc
    for value in site.gres.values():
        shown = value.replace("nvidia_h100_80gb_hbm3_", "")  # the docstrings abbreviate Fir's and Nibi's
        assert shown in doc, f"{name}: {value!r} is not in the docstring"


def test_site_records_are_frozen() -> None:
    site = SITES["narval"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        site.endpoints = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        site.gres["A100"] = "elsewhere"  # type: ignore[index]


def test_an_option_the_site_does_not_take_is_named_with_the_ones_it_does() -> None:
    with pytest.raises(ValidationError) as info:
        build(SITES["fir"], proxy="submission-host")
    message = str(info.value)
    assert "'fir'" in message and "'proxy'" in message
    assert "account, host, mounts, partition, qos, validate" in message
    with pytest.raises(ValidationError, match=r"'fir'.*'proxy'"):
        clusters.by_name("fir", proxy="submission-host")
    with pytest.raises(TypeError):  # the public function's signature refuses it as any Python call does
        clusters.fir(proxy="submission-host")  # type: ignore[call-arg]


def test_user_mounts_are_added_and_replace_the_sites_at_the_same_container_path() -> None:
    site_mounts = _targets(clusters.narval())
    cluster = clusters.narval(mounts={"/home/me/data": "/data", "/scratch/me": "/scratch/"})
    kept = {target: source for target, source in site_mounts.items() if target != "/scratch"}
    assert _targets(cluster) == {**kept, "/scratch/": "/scratch/me", "/data": "/home/me/data"}
    assert "/scratch/$USER" not in _targets(cluster).values()  # the user's mount won at /scratch
    # MountSpecs (0.5.0's spelling) are added the same way.
    specs = [MountSpec("/home/me/ro", "/ro", mode=MountMode.READ_ONLY)]
    added = clusters.mila(mounts=specs).mount_specs
    assert added[-1] == specs[0] and added[-1].read_only
    # The table is untouched.
    assert _targets(clusters.narval()) == site_mounts


@pytest.mark.parametrize("bad", [["/data"], "/data:/data", [("/a", "/b")]])
def test_mounts_that_are_not_a_mapping_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"mounts={bad!r:.100}")):
        clusters.narval(mounts=bad)  # type: ignore[arg-type]


def test_a_relative_user_mount_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError, match="'data' must be an absolute path"):
        clusters.fir(mounts={"data": "/data"})


def _script(cluster: SlurmClusterConfig) -> str:
    executor = Slurm(requirements=JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(hours=1))
    job = JobComponent(
        executable=RemoteImage(image="registry.example.org/img:1", entrypoint=["python"]), executor=executor
    )
    request = JobScriptRequest(
        cluster=cluster,
        jobs=[job],
        trials=[Trial(work_unit_id=1)],
        experiment_id=7,
        job_name="t",
        state_dir="/s",
    )
    return render_job_script(request)


def test_mounts_and_proxy_reach_the_job_script() -> None:
    script = _script(clusters.narval("me", proxy="submission-host", mounts={"/home/me/data": "/data"}))
    assert re.search(r"--bind=\S*/home/me/data:/data", script)
    assert re.search(r"--bind=\S*/scratch/\$USER:/scratch", script)  # the preset's stay
    assert '-D "127.0.0.1:${xm_proxy_port}" "${SLURM_SUBMIT_HOST}"' in script
    assert "xm_proxy_port" not in _script(clusters.narval("me"))  # no proxy unless asked for


@pytest.mark.parametrize("name", ["narval", "rorqual", "beluga", "graham"])
def test_proxy_is_taken_where_0_4_7_or_upstream_takes_it(name: str) -> None:
    assert _function(name)(proxy="me@gateway.example.org").proxy == "me@gateway.example.org"
    with pytest.raises(ValidationError, match=r"proxy='no spaces allowed'"):
        _function(name)(proxy="no spaces allowed")


def test_cc_is_an_alias_of_drac() -> None:
    module = importlib.import_module("xm_slurm.contrib.clusters.cc")
    assert module is cc and clusters.cc is cc
    assert cc.__all__ == drac.__all__
    for name in drac.__all__:
        assert getattr(cc, name) is getattr(drac, name)


def test_drac_all_builds_0_4_7s_four_clusters() -> None:
    configs = drac.all("me", account="def-pi", mounts={"/home/me/data": "/data"})
    assert [c.name for c in configs] == ["narval", "beluga", "cedar", "graham"]
    for config in configs:
        assert (config.ssh.user, config.account) == ("me", "def-pi")
        assert _targets(config)["/data"] == "/home/me/data"
        assert _facts(config) == _facts(
            clusters.by_name(config.name, "me", account="def-pi", mounts={"/home/me/data": "/data"})
        )
