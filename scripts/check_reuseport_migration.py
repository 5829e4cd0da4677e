"""Whether connections queued on a closing SO_REUSEPORT listener survive.

    python scripts/check_reuseport_migration.py

With several workers, `spamlearn serve`'s spamd listener is one
SO_REUSEPORT socket per worker; SIGHUP replaces the workers one by one.
This queues 40 connections on two such listeners, closes one, and counts
how many the other accepted and how many were reset.  Linux resets them
unless ``net.ipv4.tcp_migrate_req`` is 1 (5.14 and later), which hands
them to the listener left.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

CONNECTIONS = 40


def listener(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(CONNECTIONS)
    return sock


def main() -> None:
    closing = listener()
    staying = listener(closing.getsockname()[1])
    clients = [socket.create_connection(closing.getsockname()) for _ in range(CONNECTIONS)]
    time.sleep(0.1)                 # all handshakes done: each queued on one of the two
    closing.close()
    staying.settimeout(0.5)
    accepted = 0
    try:
        while True:
            conn, _ = staying.accept()
            conn.sendall(b"ok")
            conn.close()
            accepted += 1
    except TimeoutError:
        pass
    lost = 0
    for client in clients:
        client.settimeout(1)
        try:
            lost += client.recv(2) != b"ok"
        except (ConnectionResetError, TimeoutError):
            lost += 1
        client.close()
    staying.close()
    setting = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    value = setting.read_text().strip() if setting.exists() else "absent"
    print(f"net.ipv4.tcp_migrate_req = {value}: {accepted} of {CONNECTIONS} accepted by the "
          f"listener left, {lost} reset")


if __name__ == "__main__":
    main()
