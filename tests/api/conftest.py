"""Fixtures of the metadata tests: see metadata_fixtures (a unique module name, safe to import from tests)."""

from metadata_fixtures import api, backend, flaky, rest_server, rest_server_postgres, state_dir

__all__ = ["api", "backend", "flaky", "rest_server", "rest_server_postgres", "state_dir"]
