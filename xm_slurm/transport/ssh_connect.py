"""Open one authenticated asyncssh connection to a cluster, trying its endpoints in order.

Failover: the next endpoint is tried when one refuses the connection, cannot be reached, or does not finish
the SSH handshake (TCP connection, key exchange, host key check) within `timeout` seconds: a black-holed
robot node costs `timeout` (`connect_timeout`, 15 s by default), then the login node is used. A host key
that does not verify and a refused login are errors at once, never a reason to try another endpoint: another
address of the same cluster would not make a wrong key right, and a refused second factor must be shown.

After the handshake, the login itself (the key, then keyboard-interactive prompts if the server asks) may
take `timeout` seconds plus `prompt_timeout` for the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import asyncssh

from xm_slurm.errors import ConnectionLostError, HostKeyError
from xm_slurm.ssh_config import Endpoint, SlurmSSHConfig
from xm_slurm.transport.ssh_auth import (
    PROMPT_TIMEOUT,
    Answerer,
    LoginClient,
    SecondFactorWanted,
    login_error,
)
from xm_slurm.transport.ssh_parts import address_of, host_key_message, pinned_algorithm_message, reason_of

log = logging.getLogger(__name__)


class _Unreachable(Exception):
    """This endpoint could not be reached in time (refused, unreachable, silent): try the next one."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def _existing(paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.isfile(p)]


def base_options(config: SlurmSSHConfig, *, keepalive: float) -> dict[str, Any]:
    """asyncssh options of every endpoint (the user, keys, host key trust, OpenSSH config files)."""
    options: dict[str, Any] = {
        "config": _existing(config.openssh_config_files()),
        "keepalive_interval": keepalive,
        "keepalive_count_max": 3,
        "errors": "replace",
    }
    if config.user is not None:
        options["username"] = config.user
    if config.client_keys is not None:
        options["client_keys"] = [os.path.expanduser(k) for k in config.client_keys]
    if config.public_key is not None:
        # Trust exactly this key for this connection: a different server key is refused.
        key = asyncssh.import_public_key(config.public_key.to_openssh())
        options["known_hosts"] = ([key], [], [])
    elif config.known_hosts is not None:
        options["known_hosts"] = os.path.expanduser(config.known_hosts)
    # Otherwise asyncssh uses UserKnownHostsFile or ~/.ssh/known_hosts. It is never None: that would
    # switch verification off.
    return options


async def probe_host_key(
    config: SlurmSSHConfig, endpoint: Endpoint, algorithms: Sequence[str] = (), *, timeout: float = 10
) -> asyncssh.SSHKey | None:
    """The key a server presents (restricted to `algorithms` if given), or None. Only for messages: never
    trusted."""
    files = _existing(config.openssh_config_files())
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(
            asyncssh.get_server_host_key(
                endpoint.hostname,
                endpoint.port or (),
                config=files,
                server_host_key_algs=list(algorithms) or (),
            ),
            timeout,
        )
    return None


async def connect(
    config: SlurmSSHConfig,
    *,
    timeout: float,
    answer: Answerer | None,
    keepalive: float = 30.0,
    prompt_timeout: float = PROMPT_TIMEOUT,
) -> asyncssh.SSHClientConnection:
    """A logged-in connection to the first endpoint that answers. `answer` None: a server asking for
    keyboard-interactive raises `SecondFactorWanted` (the caller leaves the login to a session holder)."""
    options = base_options(config, keepalive=keepalive)
    failures: list[tuple[Endpoint, _Unreachable]] = []
    for i, endpoint in enumerate(config.endpoints):
        try:
            return await _attempt(config, endpoint, options, timeout, answer, prompt_timeout)
        except _Unreachable as e:
            failures.append((endpoint, e))
            if i + 1 < len(config.endpoints):
                log.warning(
                    "SSH endpoint %s of %s: %s; trying %s",
                    address_of(endpoint),
                    config.destination,
                    e,
                    address_of(config.endpoints[i + 1]),
                )
    # The last endpoint's real error (a time-out, a refusal) as the cause.
    raise ConnectionLostError(_unreachable_message(config, failures, timeout)) from failures[-1][1].__cause__


async def _attempt(
    config: SlurmSSHConfig,
    endpoint: Endpoint,
    options: dict[str, Any],
    timeout: float,
    answer: Answerer | None,
    prompt_timeout: float,
) -> asyncssh.SSHClientConnection:
    client = LoginClient(answer)
    task = asyncio.ensure_future(
        asyncssh.connect(
            endpoint.hostname,
            endpoint.port or (),
            client_factory=lambda: client,
            connect_timeout=None,  # ours, below: the handshake and the login are bounded apart
            **options,
        )
    )
    handshake = asyncio.ensure_future(client.handshake_done.wait())
    try:
        done, _ = await asyncio.wait({task, handshake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise _Unreachable(f"no SSH server answered within {timeout:g} s", timed_out=True) from (
                asyncio.TimeoutError()
            )
        return await asyncio.wait_for(asyncio.shield(task), timeout + prompt_timeout)
    except asyncssh.HostKeyNotVerifiable as e:
        probe = _prober(config, endpoint, timeout)
        raise HostKeyError(await host_key_message(config, endpoint, probe, e)) from e
    except asyncssh.PermissionDenied as e:
        if answer is None and client.kbdint_asked and client.error is None:
            raise SecondFactorWanted(endpoint) from e
        raise login_error(config, client, e) from e
    except asyncio.TimeoutError as e:
        raise _Unreachable(
            f"the login did not finish within {timeout + prompt_timeout:g} s", timed_out=True
        ) from e
    except ConnectionRefusedError as e:
        raise _Unreachable(f"connection refused ({reason_of(e)})", timed_out=False) from e
    except (OSError, asyncssh.Error) as e:
        # A server that offers no key of the pinned algorithm drops the key exchange, which looks like a
        # reset: ask it which key it has, to say so instead.
        if config.public_key is not None:
            message = await pinned_algorithm_message(config, endpoint, _prober(config, endpoint, timeout))
            if message is not None:
                raise HostKeyError(message) from e
        raise _Unreachable(reason_of(e), timed_out=False) from e
    finally:
        handshake.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _prober(config: SlurmSSHConfig, endpoint: Endpoint, timeout: float) -> Any:
    async def probe(algorithms: Sequence[str] = ()) -> asyncssh.SSHKey | None:
        return await probe_host_key(config, endpoint, algorithms, timeout=min(timeout, 10))

    return probe


def _unreachable_message(
    config: SlurmSSHConfig, failures: list[tuple[Endpoint, _Unreachable]], timeout: float
) -> str:
    if len(failures) == 1:
        endpoint, e = failures[0]
        address = address_of(endpoint)
        try_it = (
            f"ssh -p {endpoint.port} {endpoint.hostname}" if endpoint.port else f"ssh {endpoint.hostname}"
        )
        if e.timed_out:
            return (
                f"connecting to {address} timed out after {timeout:g} s: {e}. Check the host and port, that "
                f"sshd runs there and that no firewall or VPN drops the traffic (`{try_it}` from this "
                "machine); a slow link may need a longer connect_timeout. Nothing ran on the cluster: "
                "retrying is safe"
            )
        return (
            f"could not connect to {address}: {e}. Check the host, port and that sshd runs there; nothing "
            "ran on the cluster, so retrying is safe"
        )
    tried = "; ".join(f"{address_of(endpoint)}: {e}" for endpoint, e in failures)
    return (
        f"could not connect to any of the {len(failures)} endpoints of {config.destination} (tried in "
        f"order, {timeout:g} s each): {tried}. Check that the cluster is up and reachable from this machine "
        "(VPN, firewall); nothing ran on the cluster, so retrying is safe"
    )
