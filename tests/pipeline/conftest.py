"""Pipeline tests never leave this machine: a safety net around every socket connection."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to an address other than 127.0.0.1 fails the test (no DNS, no internet)."""
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to reach {address[0]}: only 127.0.0.1 is allowed")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
