"""Loaded by every Python process of a guarded run (PYTHONPATH): any internet socket connection
is recorded in $MCINR_NETWORK_LOG and fails.  Local (AF_UNIX) sockets, which multiprocessing
uses between its processes, are allowed."""

import os
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _guarded(method):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            with open(os.environ["MCINR_NETWORK_LOG"], "a") as log:
                log.write(f"{os.getpid()} {address!r}\n")
            raise OSError(101, "network is blocked in this test")
        return method(self, address)

    return connect


if os.environ.get("MCINR_NETWORK_LOG"):
    socket.socket.connect = _guarded(_connect)
    socket.socket.connect_ex = _guarded(_connect_ex)
