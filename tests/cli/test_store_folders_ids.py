"""The store id that names cluster folders: made once per store, kept, the same through REST (the server's
store's), and the folder rule of `paths.experiment_dir`. Real SQLite files and the real REST server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xm_slurm import paths
from xm_slurm.api import ExperimentPatch, settings
from xm_slurm.api.rest import RestClient
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import sqlite_url
from xm_slurm.api.store_info import StoreInfo
from xm_slurm.errors import MetadataError, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from metadata_fixtures import start_server, stop_server


def _open(path: Path) -> SqlClient:
    return SqlClient.open(sqlite_url(path))


def test_each_store_gets_its_own_id_once_and_keeps_it(tmp_path: Path) -> None:
    first = _open(tmp_path / "a.sqlite3")
    info = first.get_store_info()
    first.insert_experiment(ExperimentPatch(title="x"))
    first.close()
    again = _open(tmp_path / "a.sqlite3")
    assert again.get_store_info() == info  # kept, not made anew on each open
    again.close()
    other = _open(tmp_path / "b.sqlite3")
    assert other.get_store_info().store_id != info.store_id
    other.close()
    assert info.legacy_max_xid == 0 and info.folder_key(1) == info.store_id


def test_a_rest_client_gets_its_servers_store_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server(tmp_path / "server")
    try:
        rest = RestClient(server.base_url, server.token)
        via_rest = rest.get_store_info()
        local = _open(server.db_path)
        assert via_rest == local.get_store_info()
        local.close()
        monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "laptop"))
        settings.clear_cache()
        assert SqlClient.open().get_store_info().store_id != via_rest.store_id  # the laptop's own store
    finally:
        settings.clear_cache()
        stop_server(server)


def test_folder_rule() -> None:
    sid = "0123456789ab"
    assert paths.experiment_dir("/s/", 7, sid) == "/s/store-0123456789ab/00000007"
    assert paths.experiment_dir("/s/", 7) == "/s/00000007"  # the old layout
    info = StoreInfo(store_id=sid, legacy_max_xid=4)
    assert [info.folder_key(x) for x in (4, 5)] == [None, sid]
    for bad in ("../x", "0123456789AB", "", "0123456789abc"):
        with pytest.raises(ValidationError, match="12 lower-case hex"):
            paths.experiment_dir("/s", 1, bad)
    with pytest.raises(MetadataError, match="not 12 lower-case hex"):
        StoreInfo.from_json({"store_id": "../../etc"})
