"""Start a real ``fedgen node`` as a subprocess (tests, demo, benchmarks).

Example
-------
>>> with NodeProcess(tmp_path / "node", config={"write_roots": [str(work)]}) as node:
...     httpx.get(node.url + "/service-info")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from snakemake_executor_plugin_fedgen.errors import FedgenError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    """A ``python -m snakemake_fedgen node`` subprocess in its own process group.

    Parameters
    ----------
    state_dir
        The node's state directory (created). ``config`` is written to ``state_dir/node.yaml``.
    port
        Port to bind; a free one if None. Kept across :meth:`restart`.
    config
        node.yaml keys (paths as strings), e.g. ``{"write_roots": [...], "runtime": "host"}``.
    host
        Address to bind.
    startup_timeout
        Seconds to wait for service-info to answer.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        port: int | None = None,
        config: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.config_path = self.state_dir / "node.yaml"
        self.config_path.write_text(yaml.safe_dump(_plain(self.config), sort_keys=True))
        self.log_path = self.state_dir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base TES URL, ``http://HOST:PORT/ga4gh/tes/v1``."""
        return f"{self.base_url}/ga4gh/tes/v1"

    @property
    def egress_read_url(self) -> str:
        return f"{self.base_url}/fedgen/v1/egress"

    def start(self) -> None:
        """Start the node and wait until service-info answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        cmd = [
            sys.executable,
            "-m",
            "snakemake_fedgen",
            "node",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--config",
            str(self.config_path),
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FedgenError(
                    f"fedgen node exited with code {self.proc.returncode} at start; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/service-info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise FedgenError(f"fedgen node did not answer within {self.startup_timeout} s.")

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the node's process group, SIGKILL it if it is still there after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node's whole process group (simulates a crash)."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and state directory."""
        self.stop()
        self.start()

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _plain(value: Any) -> Any:
    """Paths to strings, recursively, so the config dumps as plain YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
