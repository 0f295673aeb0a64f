"""The two ways to reach ClickHouse, behind one small interface: chDB in this process, or a
server over HTTP through ``clickhouse-connect``.

Both take the same SQL text. Values go in as ClickHouse query parameters (``{name:Type}``
placeholders), never spliced into the SQL: the server (or chDB) parses them by their declared
type. The HTTP client sends them as ``param_NAME`` in ClickHouse's text form, which
clickhouse-connect writes; chDB takes that same text, which :func:`param_text` writes.

chDB is ClickHouse's engine as a library (``clickhouse local`` with state). It holds **one
database directory per process** and a directory is **held by one process** at a time (a
second one cannot open it, not even read-only), like a DuckDB file opened for writing. So
this process's sessions are shared per directory (:func:`open_chdb`; a session is
thread-safe), opening another directory while one is open is refused in one line, and a
directory another process holds is waited for (up to :data:`LOCK_WAIT` seconds) and then
refused in one line. The wait asks the lock chDB takes (``flock`` on the directory's
``status`` file) before each attempt to open, because each attempt chDB refuses prints its
own error lines to the process's stderr: two publishers at once filled it with one
"Cannot lock file" error every 50 ms of the wait.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pythonhosted.errortext import first_line
from pythonhosted.warehouse.base import WarehouseError

LOCK_WAIT = 10.0
HTTP_PORT = 8123
Params = Mapping[str, object]
_MISSING = "{scheme}:// warehouses need an optional part: pip install 'pythonhosted[{extra}]'"


class Engine(Protocol):
    """ClickHouse, however reached. Every method blocks."""

    name: str  # for messages: the URL without secrets

    def command(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""
        ...

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Run a query; its rows as tuples of Python values (dates, naive UTC datetimes)."""
        ...

    def insert(self, sql: str, source: Path | bytes) -> None:
        """Run ``INSERT INTO ... [SETTINGS ...] FORMAT F`` with ``source`` as its data."""
        ...

    def export(self, sql: str, params: Params, fmt: str, target: Path) -> None:
        """Write a query's answer in format ``fmt`` to the local file ``target``, streamed."""
        ...

    def close(self) -> None: ...


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _escaped(text: str) -> str:
    """A string in ClickHouse's escaped text form (a query parameter's, TSV's)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def param_text(value: object, *, nested: bool = False) -> str:
    """``value`` as ClickHouse reads a query parameter of its type: strings escaped (quoted
    inside arrays), dates ISO, booleans ``true``/``false``, None ``\\N``, lists ``[a,b]``."""
    if value is None:
        return "NULL" if nested else "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return _quoted(value.isoformat(" ")) if nested else value.isoformat(" ")
    if isinstance(value, date):
        return _quoted(value.isoformat()) if nested else value.isoformat()
    if isinstance(value, str):
        return _quoted(value) if nested else _escaped(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(param_text(item, nested=True) for item in value) + "]"
    raise TypeError(f"no ClickHouse parameter form for {type(value).__name__}")


def _plain(value: Any) -> Any:
    """A value as both engines give it: datetimes naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _converter(kind: str) -> Callable[[Any], Any]:
    """From a JSON value of ClickHouse type ``kind`` to what clickhouse-connect gives."""
    for wrapper in ("Nullable(", "LowCardinality("):
        if kind.startswith(wrapper):
            inner = _converter(kind[len(wrapper) : -1])
            return lambda value: None if value is None else inner(value)
    if kind.startswith("Array("):
        item = _converter(kind[len("Array(") : -1])
        return lambda value: [item(each) for each in value]
    if kind in ("Date", "Date32"):
        return date.fromisoformat
    if kind.startswith("DateTime"):
        return datetime.fromisoformat
    if kind.startswith(("Int", "UInt")):
        return int
    if kind.startswith("Float"):
        return float
    return lambda value: value  # String, Bool (JSON's own), Tuple (a list)


@dataclass
class _Held:
    session: Any  # chdb.session.Session
    users: int


_HELD: dict[Path, _Held] = {}
_HELD_LOCK = threading.Lock()


class ChdbEngine:
    """A chDB database directory, in this process (see the module doc)."""

    def __init__(self, path: Path, wait: float = LOCK_WAIT) -> None:
        self.path = path.absolute()
        self.name = f"chdb://{self.path}"
        self._session = _acquire(self.path, wait)
        self._closed = False

    def command(self, sql: str, params: Params | None = None) -> None:
        self._run(sql, params, "CSV")

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Read as JSON with the column types, converted here: Arrow would be shorter, but
        its first use in a process costs a second of imports (pyarrow, pandas)."""
        result = self._run(sql, params, "JSONCompact")
        answer = orjson.loads(result.bytes()) if len(result.bytes()) else {"meta": [], "data": []}
        converters = [_converter(column["type"]) for column in answer["meta"]]
        return [
            tuple(convert(value) for convert, value in zip(converters, row, strict=True))
            for row in answer["data"]
        ]

    def insert(self, sql: str, source: Path | bytes) -> None:
        """The data is read from a file by the engine itself (``FROM INFILE``): no copy
        through Python. Contents are written to a file beside the database first."""
        if isinstance(source, bytes):
            spool = self.path / "tmp" / f"insert-{threading.get_ident()}.json"
            spool.parent.mkdir(parents=True, exist_ok=True)
            spool.write_bytes(source)
            try:
                self.insert(sql, spool)
            finally:
                spool.unlink(missing_ok=True)
            return
        head, _, tail = sql.partition(" SETTINGS ")
        if not tail:
            head, _, tail = sql.partition(" FORMAT ")
            tail = "FORMAT " + tail
        else:
            tail = "SETTINGS " + tail
        self._run(f"{head} FROM INFILE {_quoted(str(source))} {tail}", None, "CSV")

    def export(self, sql: str, params: Params, fmt: str, target: Path) -> None:
        """The engine writes the file itself (``INTO OUTFILE``)."""
        target.unlink(missing_ok=True)
        self._run(f"{sql} INTO OUTFILE {_quoted(str(target))} FORMAT {fmt}", params, "CSV")

    def _run(self, sql: str, params: Params | None, fmt: str) -> Any:
        if self._closed:
            raise WarehouseError(f"{self.name} is closed")
        texts = {key: param_text(value) for key, value in (params or {}).items()}
        try:
            return self._session.query(sql, fmt, params=texts or None)
        except Exception as exc:  # chDB raises RuntimeError subclasses with the server's text
            raise WarehouseError(f"{self.name}: {first_line(exc)}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.path)


def _acquire(path: Path, wait: float) -> Any:
    """This process's session of ``path``, opened if needed (see the module doc)."""
    try:
        from chdb.session import Session
    except ImportError as exc:
        raise WarehouseError(_MISSING.format(scheme="chdb", extra="chdb")) from exc

    with _HELD_LOCK:
        held = _HELD.get(path)
        if held is not None:
            held.users += 1
            return held.session
        if _HELD:
            other = next(iter(_HELD))
            raise WarehouseError(
                f"cannot open chdb://{path}: this process has chdb://{other} open, and chDB "
                "holds one database per process"
            )
        path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            if _held_elsewhere(path):
                if time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open chdb://{path}: another process has it open")
                time.sleep(0.05)
                continue
            try:
                session = Session(str(path))  # type: ignore[no-untyped-call]
                break
            except Exception as exc:  # held by another process: chDB cannot say more
                if time.monotonic() > deadline:
                    raise WarehouseError(
                        f"cannot open chdb://{path}: another process has it open "
                        f"({first_line(exc)})"
                    ) from exc
                time.sleep(0.05)
        _HELD[path] = _Held(session, 1)
        return session


def _held_elsewhere(path: Path) -> bool:
    """Whether a process holds chDB's lock on the directory (see the module doc)."""
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False  # never opened, or not by chDB: its own attempt will say
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock, if it was taken
    return False


def _release(path: Path) -> None:
    with _HELD_LOCK:
        held = _HELD[path]
        held.users -= 1
        if held.users == 0:
            del _HELD[path]
            held.session.close()


class HttpEngine:
    """A ClickHouse server over HTTP, through clickhouse-connect (no compression, so a
    stand-in server can answer it in tests; the rows are small and loads are NDJSON)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def command(self, sql: str, params: Params | None = None) -> None:
        self._call(lambda: self.client.command(sql, parameters=params))

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        result = self._call(lambda: self.client.query(sql, parameters=params))
        return [tuple(_plain(value) for value in row) for row in result.result_rows]

    def insert(self, sql: str, source: Path | bytes) -> None:
        data = source.read_bytes() if isinstance(source, Path) else source
        self._call(lambda: self.client.command(sql, data=data))

    def export(self, sql: str, params: Params, fmt: str, target: Path) -> None:
        """The answer streamed from the server into the file, a chunk at a time."""

        def stream() -> None:
            with (
                self.client.raw_stream(sql, parameters=params, fmt=fmt) as chunks,
                open(target, "wb") as out,
            ):
                for chunk in chunks:
                    out.write(chunk)

        self._call(stream)

    def _call(self, run: Any) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            return run()
        except ClickHouseError as exc:
            raise WarehouseError(f"{self.name}: {first_line(exc)}") from exc

    def close(self) -> None:
        self.client.close()


def chdb_path(url: str) -> Path:
    """``chdb:///abs/dir`` (or ``chdb://rel/dir``) -> the database directory."""
    rest = url.removeprefix("chdb:").removeprefix("//")
    if not rest:
        raise ValueError(f"chDB warehouse URL needs a directory: {url!r}")
    return Path(rest)


@dataclass(frozen=True)
class ServerAddress:
    """Where a ``clickhouse://[user@]host:port/database[?secure=true]`` URL points."""

    host: str
    port: int
    user: str
    database: str
    secure: bool

    @classmethod
    def parse(cls, url: str) -> ServerAddress:
        parts = urlsplit(url)
        database = parts.path.strip("/")
        if parts.scheme != "clickhouse" or not parts.hostname or not database or "/" in database:
            raise ValueError(
                f"ClickHouse warehouse URL must be clickhouse://[user@]host:port/database: {url!r}"
            )
        if parts.password is not None:
            raise ValueError(
                "a password in a warehouse URL is refused: set CLICKHOUSE_PASSWORD instead"
            )
        query = parse_qs(parts.query)
        secure = query.get("secure", ["false"])[0].lower() in ("1", "true")
        return cls(
            parts.hostname,
            parts.port or HTTP_PORT,
            unquote(parts.username or "default"),
            database,
            secure,
        )


def open_http(address: ServerAddress, password: str = "") -> HttpEngine:
    """A client of the server, with the database created if missing."""
    try:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError
    except ImportError as exc:
        raise WarehouseError(_MISSING.format(scheme="clickhouse", extra="clickhouse")) from exc

    name = f"clickhouse://{address.user}@{address.host}:{address.port}/{address.database}"
    try:
        setup = clickhouse_connect.get_client(
            host=address.host,
            port=address.port,
            username=address.user,
            password=password,
            secure=address.secure,
            compress=False,
            autogenerate_session_id=False,
        )
        setup.command(f"CREATE DATABASE IF NOT EXISTS `{address.database}`")
        setup.close()
        client = clickhouse_connect.get_client(
            host=address.host,
            port=address.port,
            username=address.user,
            password=password,
            database=address.database,
            secure=address.secure,
            compress=False,
            autogenerate_session_id=False,
        )
    except ClickHouseError as exc:
        raise WarehouseError(f"cannot open {name}: {first_line(exc)}") from exc
    return HttpEngine(client, name)


def open_engine(url: str) -> Engine:
    """``chdb://PATH`` or ``clickhouse://[user@]host:port/database``; the password of the
    latter from ``CLICKHOUSE_PASSWORD`` (never in the URL)."""
    if url.startswith("chdb:"):
        return ChdbEngine(chdb_path(url))
    return open_http(ServerAddress.parse(url), os.environ.get("CLICKHOUSE_PASSWORD", ""))


def settings_sql(settings: Mapping[str, object]) -> str:
    """A ``SETTINGS`` clause (values are ours, never input)."""
    return "SETTINGS " + ", ".join(
        f"{key} = {param_text(value, nested=True)}" for key, value in settings.items()
    )
