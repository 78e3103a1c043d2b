"""Every site preset builds a valid config whose facts carry a source; `by_name` finds them or says why not."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.contrib import clusters
from xm_slurm.errors import ValidationError
from xm_slurm.resources import ResourceType

EXPECTED_NAMES = [
    "beluga",
    "cedar",
    "fir",
    "graham",
    "killarney",
    "mila",
    "narval",
    "nibi",
    "rorqual",
    "tamia",
    "trillium",
    "trillium-gpu",
    "vulcan",
]

# The first endpoint each preset connects to (the full lists and keys: test_site_facts.py).
LOGIN_HOSTS = {
    "mila": "login.server.mila.quebec",
    "narval": "robot.narval.alliancecan.ca",
    "beluga": "robot.beluga.alliancecan.ca",
    "cedar": "robot.cedar.alliancecan.ca",
    "graham": "robot.graham.alliancecan.ca",
    "fir": "robot.fir.alliancecan.ca",
    "nibi": "robot.nibi.alliancecan.ca",
    "rorqual": "robot.rorqual.alliancecan.ca",
    "trillium": "trillium.alliancecan.ca",
    "trillium-gpu": "trillium-gpu.alliancecan.ca",
    "killarney": "killarney.alliancecan.ca",
    "vulcan": "vulcan.alliancecan.ca",
    "tamia": "robot.tamia.ecpia.ca",
}
# Retired sites warn when built; their warning has its own test (test_site_facts.py).
pytestmark = pytest.mark.filterwarnings("ignore::xm_slurm.contrib.clusters.factory.RetiredSiteWarning")


def test_the_registry_holds_the_expected_presets() -> None:
    assert clusters.names() == EXPECTED_NAMES
    assert set(LOGIN_HOSTS) == set(EXPECTED_NAMES)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_preset_constructs_and_validates(name: str) -> None:
    cluster = clusters.by_name(name, "someone", account="def-pi")
    assert isinstance(cluster, SlurmClusterConfig)
    assert cluster.name == name
    assert cluster.ssh.host == LOGIN_HOSTS[name]
    assert cluster.ssh.user == "someone"
    assert cluster.account == "def-pi"
    # Pinned where the site's key is known (every site but Trillium's two); else known_hosts decides.
    assert (cluster.ssh.host_public_key is None) == name.startswith("trillium")
    # Every preset is a real, re-validatable config.
    assert dataclasses.replace(cluster, partition="somepart").partition == "somepart"


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_user_defaults_to_the_ssh_config(name: str) -> None:
    assert clusters.by_name(name).ssh.user is None


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_preset_documents_its_source(name: str) -> None:
    entry = clusters.PRESETS[name]
    doc = inspect.getdoc(entry.factory) or ""
    urls = re.findall(r"https://\S+", doc)
    assert urls, f"{name}: the docstring names no source URL"
    assert entry.source.startswith("https://")
    assert entry.source in doc, f"{name}: registry source {entry.source} is not the one in the docstring"


@pytest.mark.parametrize("name", [n for n in EXPECTED_NAMES if n != "mila"])
def test_alliance_presets_use_apptainer_with_its_module_and_binds(name: str) -> None:
    cluster = clusters.by_name(name)
    assert cluster.runtime is ContainerRuntime.APPTAINER
    assert cluster.prolog is not None and cluster.prolog.startswith("module load apptainer")
    assert {m.target: m.source for m in cluster.mount_specs}["/scratch"] == "/scratch/$USER"
    # The image cache stays off the home directory (read-only on Trillium's compute nodes).
    assert cluster.host_environment["APPTAINER_CACHEDIR"] == "$SCRATCH/.apptainer"


def test_mila_preset() -> None:
    cluster = clusters.mila("me")
    assert (cluster.ssh.host, cluster.ssh.port, cluster.ssh.user) == ("login.server.mila.quebec", 2222, "me")
    assert cluster.runtime is ContainerRuntime.SINGULARITY
    assert {m.target: m.source for m in cluster.mount_specs}[
        "/scratch"
    ] == "/network/scratch/${USER:0:1}/$USER"
    assert cluster.resources[ResourceType.A100_80GIB] == "a100l"
    assert cluster.resources[ResourceType.L40S] == "l40s"
    assert not cluster.features
    # An ~/.ssh/config alias with its own Port: let the config decide.
    aliased = clusters.mila(host="mila", port=None)
    assert (aliased.ssh.host, aliased.ssh.port) == ("mila", None)
    assert clusters.mila(runtime=ContainerRuntime.APPTAINER).runtime is ContainerRuntime.APPTAINER


def test_host_override_keeps_the_rest_of_the_preset() -> None:
    login = clusters.narval("me", host="narval.alliancecan.ca")
    assert login.ssh.host == "narval.alliancecan.ca"
    assert login.resources == clusters.narval("me").resources
    assert login.ssh.host_public_key == clusters.narval("me").ssh.host_public_key


@pytest.mark.parametrize("bad_user", ["two words", "me@host", "-oProxyCommand=x", ""])
def test_bad_user_is_refused_naming_it(bad_user: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(bad_user))):
        clusters.narval(bad_user)


@pytest.mark.parametrize("spelling", ["NARVAL", " narval ", "Narval"])
def test_by_name_is_case_insensitive(spelling: str) -> None:
    assert clusters.by_name(spelling).name == "narval"


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("Béluga", "beluga"),
        ("tamIA", "tamia"),
        ("trillium_gpu", "trillium-gpu"),
        ("TRILLIUM-GPU", "trillium-gpu"),
    ],
)
def test_by_name_accepts_the_sites_own_spellings(spelling: str, name: str) -> None:
    assert clusters.by_name(spelling).name == name


def test_by_name_unknown_names_the_value_and_lists_the_presets() -> None:
    with pytest.raises(ValidationError) as info:
        clusters.by_name("narwhal")
    message = str(info.value)
    assert "'narwhal'" in message
    for name in EXPECTED_NAMES:
        assert name in message


@pytest.mark.parametrize("bad", [None, 42, b"narval"])
def test_by_name_refuses_a_non_string(bad: object) -> None:
    with pytest.raises(ValidationError, match="known presets: beluga, cedar"):
        clusters.by_name(bad)  # type: ignore[arg-type]


def test_by_name_refuses_an_option_the_preset_does_not_take() -> None:
    with pytest.raises(ValidationError, match=r"'narval'.*runtime"):
        clusters.by_name("narval", runtime=ContainerRuntime.PODMAN)


def test_by_name_passes_options_through() -> None:
    cluster = clusters.by_name("mila", "me", partition="long", port=None)
    assert (cluster.partition, cluster.ssh.port, cluster.ssh.user) == ("long", None, "me")


def test_bad_account_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError, match="account='def pi'"):
        clusters.fir(account="def pi")


def test_registry_facts() -> None:
    retired = {name for name, p in clusters.PRESETS.items() if p.retired}
    assert retired == {"beluga", "cedar", "graham"}
    assert clusters.PRESETS["fir"].compute_internet is True
    assert clusters.PRESETS["narval"].compute_internet is False
    assert clusters.PRESETS["vulcan"].compute_internet is None  # whitelisting proxy only
