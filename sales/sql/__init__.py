"""The SQL the ORM cannot say, one file per version of each function; migrations load them by name.

A change to a function is a new file and a new migration that loads it, so every migration keeps
installing exactly what it installed when it was written (tests/test_purchase_function.py checks
the function installed in PostgreSQL equals the newest file).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def source(name: str) -> str:
    """The text of `<name>.sql` in this directory."""
    return (HERE / f"{name}.sql").read_text()


def body(name: str) -> str:
    """The function body of `<name>.sql`: the text between its `$$` quotes, as PostgreSQL keeps it
    in pg_proc.prosrc."""
    return source(name).split("$$")[1]
