"""The REST server of the metadata store (optional extra `server`: fastapi + uvicorn).

`app.create_app(client)` builds the FastAPI application over a `SqlClient`; `tokens` manages the bearer
tokens (stored hashed, in the same database). Run it with `xm-slurm server run`; see docs/metadata.md.
This package's `__init__` imports nothing, so token management works without the extra installed.
"""
