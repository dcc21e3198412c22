"""Real servers on this machine: uvicorn on 127.0.0.1 in a thread of the test process, and a throw-away
PostgreSQL cluster on a Unix socket."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        for _ in range(200):
            if self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Postgres:
    """A PostgreSQL cluster of its own on a Unix socket, run as the `postgres` user when the tests run as root
    (PostgreSQL refuses root); `url(database)` is what SQLAlchemy, Optuna and MLflow take."""

    def __init__(self, root: Path) -> None:
        import pwd

        self.root = root
        self.data, self.sockets = root / "data", root / "sockets"
        self.port = 5432 + os.getpid() % 1000
        self.prefix: list[str] = []
        self.sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.initdb, self.pg_ctl, self.createdb = (shutil.which(n) for n in ("initdb", "pg_ctl", "createdb"))

    def _call(self, *arguments: str) -> None:
        subprocess.run([*self.prefix, *arguments], check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        self._call(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-k {self.sockets} -c listen_addresses='' -p {self.port} -c fsync=off"
        self._call(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                   "start")
        for database in ("optuna", "mlflow"):  # apart: both keep their schema version in `alembic_version`
            self.create(database)
        return self

    def create(self, database: str) -> str:
        """A new empty database; its URL."""
        self._call(self.createdb, "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres", database)
        return self.url(database)

    def stop(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.sockets}&port={self.port}"  # as the README writes them
