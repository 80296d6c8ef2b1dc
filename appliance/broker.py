"""The box's own Mosquitto broker: per-device passwords, a write ACL per device, loopback only.

`BrokerConfig` writes mosquitto.conf, the password file (hashed by mosquitto_passwd) and the ACL;
`Broker` runs it as a child process. The demo and the tests use the same code as an installed
box, so what they exercise is the real broker with the real access rules.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be configured or started."""


def _find(program: str) -> str:
    path = shutil.which(program) or next(
        (str(p) for p in (Path("/usr/sbin") / program, Path("/usr/bin") / program) if p.exists()), None
    )
    if path is None:
        raise BrokerError(f"{program} is not installed (Debian package mosquitto; ./install/dev.sh setup installs it)")
    return path


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class BrokerConfig:
    """Users and rules of one broker. `devices` maps a device user to its password; each device
    may write only its own subtree (`shop/<shop>/<kind>/<user>/#`) and read its commands."""

    folder: Path
    shop: str
    port: int = 0
    appliance_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    devices: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_device(self, user: str, kind: str, password: str | None = None) -> str:
        """Register a device of `kind` (shelf, gate, vision); returns its password."""
        if kind not in ("shelf", "gate", "vision"):
            raise ValueError(f"device kind must be shelf, gate or vision, got {kind!r}")
        pw = password or secrets.token_urlsafe(18)
        self.devices[user] = (kind, pw)
        return pw

    def write(self) -> Path:
        """Write mosquitto.conf, passwords and ACL into `folder`; returns the conf path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        pw_file = self.folder / "passwords"
        acl_file = self.folder / "acl"
        conf = self.folder / "mosquitto.conf"
        pw_file.write_text("")
        pw_file.chmod(0o600)
        users = {"appliance": self.appliance_password} | {u: pw for u, (_k, pw) in self.devices.items()}
        passwd = _find("mosquitto_passwd")
        for user, pw in users.items():
            try:
                subprocess.run([passwd, "-b", str(pw_file), user, pw], check=True, capture_output=True, timeout=30)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                raise BrokerError(f"mosquitto_passwd failed for user {user!r}") from err
        shop = self.shop
        acl = [f"user appliance\ntopic readwrite shop/{shop}/#\n"]
        for user, (kind, _pw) in sorted(self.devices.items()):
            acl.append(
                f"user {user}\ntopic write shop/{shop}/{kind}/{user}/#\ntopic read shop/{shop}/{kind}/{user}/cmd/#\n"
                f"topic read shop/{shop}/appliance/available\n"
            )
        acl_file.write_text("\n".join(acl))
        acl_file.chmod(0o600)
        conf.write_text(
            # Mosquitto started as root drops to its own user, which cannot read files in a private
            # folder; a broker this process starts runs as this process's user instead.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {pw_file}\n"
            f"acl_file {acl_file}\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        return conf


class Broker:
    """A running Mosquitto child process; use as a context manager."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.config.port

    def start(self, timeout: float = 10.0) -> None:
        conf = self.config.write()
        log = self.config.folder / "mosquitto.log"
        with log.open("wb") as sink:
            self._proc = subprocess.Popen([_find("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=sink)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = log.read_text(errors="replace")
                raise BrokerError(f"mosquitto exited at start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    logger.info("broker listening on 127.0.0.1:%s", self.port)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
