"""Can this machine build for a platform? Natively, or through an emulator registered with binfmt_misc.

A `RUN` step of a foreign platform executes that platform's binaries; without an emulator (qemu-user,
registered in `/proc/sys/fs/binfmt_misc`) it fails deep in the build with `exec format error`. This check
says so before anything is built.
"""

from __future__ import annotations

import platform as host_platform
from collections.abc import Sequence
from pathlib import Path

from xm_slurm.errors import ValidationError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# Platform architecture (`linux/<arch>`) -> the names its emulator registers under (qemu-<name>).
_QEMU_NAMES = {
    "amd64": ("x86_64",),
    "386": ("i386",),
    "arm64": ("aarch64",),
    "arm": ("arm",),
    "ppc64le": ("ppc64le",),
    "s390x": ("s390x",),
    "riscv64": ("riscv64",),
    "mips64le": ("mips64el",),
}
# Host machine (uname -m) -> the platform architectures it runs without an emulator.
_NATIVE = {
    "x86_64": {"amd64", "386"},
    "amd64": {"amd64", "386"},
    "aarch64": {"arm64"},
    "arm64": {"arm64"},
    "armv7l": {"arm"},
    "ppc64le": {"ppc64le"},
    "s390x": {"s390x"},
    "riscv64": {"riscv64"},
}


def _arch(platform: str) -> str:
    return platform.split("/")[1]


def registered_emulators(binfmt_dir: Path = BINFMT_DIR) -> set[str]:
    """The architectures an enabled binfmt_misc entry emulates (`qemu-aarch64` -> `aarch64`)."""
    found: set[str] = set()
    try:
        entries = list(binfmt_dir.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name in ("register", "status"):
            continue
        try:
            first = entry.read_text().splitlines()[:1]
        except OSError:
            continue
        if first == ["enabled"]:
            found.add(entry.name.removeprefix("qemu-"))
    return found


def check_buildable(
    platforms: Sequence[str], *, machine: str | None = None, binfmt_dir: Path = BINFMT_DIR
) -> None:
    """A ValidationError naming the first platform this machine can neither run nor emulate."""
    machine = machine or host_platform.machine()
    native = _NATIVE.get(machine, set())
    emulated: set[str] | None = None
    for platform in platforms:
        os_name, arch = platform.split("/")[0], _arch(platform)
        if os_name == "linux" and arch in native:
            continue
        if emulated is None:
            emulated = registered_emulators(binfmt_dir)
        if os_name == "linux" and any(name in emulated for name in _QEMU_NAMES.get(arch, (arch,))):
            continue
        raise ValidationError(
            f"platforms: {platform!r} cannot be built on this {machine} machine: no emulator for it is "
            f"registered in {binfmt_dir} (install qemu-user-static and binfmt-support, or build on a "
            f"{platform} machine), so its RUN steps would fail with 'exec format error'"
        )
