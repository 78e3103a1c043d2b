"""Which store this is: its id, and the newest experiment recorded before stores had one.

Two stores used from one cluster account (two laptops, a laptop and a team server) both number their
experiments from 1, so the cluster folders are named by the store too (`paths.experiment_dir`). The id is
random, made once by revision 0008 and kept in the store (`store_info` table); a REST client gets its
server's. Experiments up to `legacy_max_xid` (those the store held when it got its id) keep the folder
they were launched with, named by the xid alone.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from xm_slurm.api.operation import Call, Operation
from xm_slurm.errors import MetadataError

if TYPE_CHECKING:
    import sqlalchemy as sa

STORE_ID = re.compile(r"[0-9a-f]{12}")
STORE_ID_KEY = "store_id"
LEGACY_MAX_XID_KEY = "legacy_max_xid"


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreInfo:
    store_id: str
    legacy_max_xid: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.store_id, str) or not STORE_ID.fullmatch(self.store_id):
            raise MetadataError(f"store id {self.store_id!r} is not 12 lower-case hex digits")
        if isinstance(self.legacy_max_xid, bool) or not isinstance(self.legacy_max_xid, int):
            raise MetadataError(f"legacy_max_xid {self.legacy_max_xid!r} is not an integer")

    def folder_key(self, experiment_id: int) -> str | None:
        """The store id an experiment's cluster folder is named with; None: the old layout (xid alone)."""
        return None if experiment_id <= self.legacy_max_xid else self.store_id

    def to_json(self) -> dict[str, Any]:
        return {STORE_ID_KEY: self.store_id, LEGACY_MAX_XID_KEY: self.legacy_max_xid}

    @classmethod
    def from_json(cls, answer: Any) -> StoreInfo:
        if not isinstance(answer, dict):
            raise MetadataError(f"malformed store info: {answer!r:.200}")
        store_id: Any = answer.get(STORE_ID_KEY)  # checked by __post_init__
        return cls(store_id=store_id, legacy_max_xid=answer.get(LEGACY_MAX_XID_KEY, 0))


def read_store_info(conn: sa.Connection) -> StoreInfo:
    """The store's info from its `store_info` table (revision 0008 fills it)."""
    import sqlalchemy as sa

    from xm_slurm.api.storage.schema import store_info

    rows = {r.key: r.value for r in conn.execute(sa.select(store_info.c.key, store_info.c.value))}
    if STORE_ID_KEY not in rows:
        raise MetadataError("the store has no id (its schema is older than revision 0008)")
    try:
        legacy = int(rows.get(LEGACY_MAX_XID_KEY, "0"))
    except ValueError as e:
        raise MetadataError(f"the store's {LEGACY_MAX_XID_KEY} is not an integer") from e
    return StoreInfo(store_id=rows[STORE_ID_KEY], legacy_max_xid=legacy)


def get_store_info() -> Operation[StoreInfo]:
    """The store's id and `legacy_max_xid` (REST: the server's store, `GET /api/store`)."""
    return Operation(read_store_info, Call("GET", "/store"), StoreInfo.from_json)
