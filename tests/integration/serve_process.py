"""A real `spamlearn serve` process on a free loopback port, for tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ServeProcess", "free_port", "clean_environment", "terminate"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def terminate(process: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM ``process`` and wait up to ``timeout`` seconds, then SIGKILL it;
    True if it ended by itself (or had already ended)."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def clean_environment(home: Path) -> dict[str, str]:
    """This environment without any SPAMLEARN_* setting, with its own HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAMLEARN_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PYTHONUNBUFFERED="1")
    return env


class ServeProcess:
    """``python -m spamlearn --config CONFIG serve --port PORT ...``, started and stopped.

    Parameters
    ----------
    config : Path
        The config file (``[model]``, ``[server]``) the service reads.
    log : Path
        Where its stdout and stderr go (shown when it fails to start).
    env : dict
        Its environment (tokens can come from here).
    args : list of str
        More arguments for ``serve`` (e.g. ``["--workers", "2"]``).
    host : str
        The loopback address to listen on (``::1`` for IPv6).
    """

    def __init__(self, config: Path, log: Path, env: dict[str, str], args: list[str] = (),
                 host: str = "127.0.0.1"):
        self.config = config
        self.log = log
        self.env = env
        self.args = list(args)
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> ServeProcess:
        """Start it and wait until /healthz answers 200 (workers import scikit-learn: slow)."""
        command = [sys.executable, "-m", "spamlearn", "--config", str(self.config), "serve",
                   "--host", self.host, "--port", str(self.port), "--log-level", "warning", *self.args]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"spamlearn serve exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"spamlearn serve did not answer /healthz within {timeout} s:\n"
                           f"{self.log.read_text()}")

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (uvicorn finishes requests in flight), SIGKILL if it hangs."""
        if self.process is None:
            return None
        if not terminate(self.process, timeout):
            raise RuntimeError(f"spamlearn serve ignored SIGTERM for {timeout} s:\n"
                               f"{self.log.read_text()}")
        return self.process.returncode

    def worker_pids(self) -> list[int]:
        """The process and its children (uvicorn's workers), from /proc."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *found]

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
