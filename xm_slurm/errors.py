"""One exception hierarchy for the whole library.

Catch `XmSlurmError` for everything, or a branch for what you can act on:

    XmSlurmError
    ├── ValidationError        bad input, raised before any remote side effect
    ├── TransportError         reaching the cluster failed
    │   ├── AuthenticationError
    │   ├── HostKeyError
    │   ├── ConnectionLostError
    │   └── RemoteCommandError
    ├── SchedulerError         Slurm refused or could not answer
    │   ├── SubmissionError
    │   └── StatusUnavailableError
    ├── PackagingError         building, pushing or resolving an image failed
    └── MetadataError          the metadata store failed
        ├── ConfigurationError   backend settings missing or wrong
        └── NotFoundError        an experiment, work unit or artifact does not exist

Messages name the bad value and what would be right; they never contain a secret.
"""

from __future__ import annotations


class XmSlurmError(Exception):
    """Base class of every error raised by xm_slurm."""


class ValidationError(XmSlurmError, ValueError):
    """Bad input. Raised before anything touches a cluster or the metadata store."""


class TransportError(XmSlurmError):
    """Running a command or moving a file on the cluster failed."""


class AuthenticationError(TransportError):
    """The SSH server refused our credentials."""


class HostKeyError(TransportError):
    """The SSH host key is unknown or does not match the pinned or known one."""


class ConnectionLostError(TransportError):
    """The connection to the cluster dropped or could not be opened."""


class RemoteCommandError(TransportError):
    """A remote command exited with a non-zero status."""

    def __init__(
        self,
        message: str,
        *,
        command: str = "",
        exit_status: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.command = command
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr


class SchedulerError(XmSlurmError):
    """Slurm refused a request or could not answer it."""


class SubmissionError(SchedulerError):
    """`sbatch` refused a job."""


class StatusUnavailableError(SchedulerError):
    """Neither `sacct` nor `squeue` could tell a job's state."""


class PackagingError(XmSlurmError):
    """Building, pushing or resolving a container image failed."""


class MetadataError(XmSlurmError):
    """The metadata store failed."""


class ConfigurationError(MetadataError, ValidationError):
    """Backend settings (environment variables) are missing or wrong."""


class NotFoundError(MetadataError, LookupError):
    """An experiment, work unit or artifact does not exist."""
