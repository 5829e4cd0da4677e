"""Relays on 127.0.0.1 in front of the test Dovecot that misbehave as servers
and networks do: a trickle, FETCHes that fail, a LOGOUT never answered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Relay:
    """Passes each connection on to ``target_port``, both ways, unchanged;
    subclasses change one direction (``_up``: the client's lines,
    ``_down``: the server's bytes).  Connections after the first ``served``
    are hung up on at once; ``connections`` counts them all."""

    def __init__(self, target_port: int, served: int = 1_000_000):
        self.target_port, self.served = target_port, served
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.sockets: list[socket.socket] = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self):
        self.threads[0].start()
        return self

    def __exit__(self, *exc) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections > self.served:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for target, args in ((self._down, (upstream, client)), (self._up, (client, upstream))):
                thread = threading.Thread(target=target, args=args, daemon=True)
                self.threads.append(thread)
                thread.start()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)


class TricklingProxy(Relay):
    """Passes the server's answers on at a trickle (``chunk`` bytes every
    ``pause`` s) after the first ``fast_bytes``: an overloaded server or a
    middlebox, which never trips ``timeout``."""

    def __init__(self, target_port: int, fast_bytes: int = 6000, chunk: int = 16, pause: float = 0.05):
        super().__init__(target_port)
        self.fast_bytes, self.chunk, self.pause = fast_bytes, chunk, pause

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                while data:
                    size = self.chunk if sent >= self.fast_bytes else len(data)
                    client.sendall(data[:size])
                    sent, data = sent + size, data[size:]
                    if sent > self.fast_bytes:
                        time.sleep(self.pause)


class FailingFetches(Relay):
    """Answers the next ``times`` body FETCHes (``BODY.PEEK[]``) itself: with
    ``answer`` (``{tag}`` filled in; a ``* BYE`` then hangs up, as a server
    does), or by hanging up at once (``answer=None``): a server whose
    message store fails while it still takes logins, or a connection that
    drops.  The first ``after`` body FETCHes are passed on (an outage that
    begins part-way)."""

    def __init__(self, target_port: int, answer: bytes | None, times: int = 1_000_000,
                 served: int = 1_000_000, after: int = 0):
        super().__init__(target_port, served)
        self.answer, self.times, self.after = answer, times, after

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError), client.makefile("rb") as lines:
            for line in lines:
                if b"BODY.PEEK[]" not in line.upper() or self.times <= 0:
                    upstream.sendall(line)
                    continue
                if self.after > 0:
                    self.after -= 1
                    upstream.sendall(line)
                    continue
                self.times -= 1
                if self.answer is not None:
                    client.sendall(self.answer.replace(b"{tag}", line.split()[0]))
                    if not self.answer.startswith(b"* BYE"):
                        continue
                break
        for sock in (client, upstream):     # hang up, on both sides
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LogoutSwallowingProxy(Relay):
    """Passes everything on but LOGOUT, which it never forwards nor answers
    (``logout_seen`` is set then)."""

    def __init__(self, target_port: int):
        super().__init__(target_port)
        self.logout_seen = threading.Event()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError), client.makefile("rb") as lines:
            for line in lines:
                if line.split()[1:2] == [b"LOGOUT"]:
                    self.logout_seen.set()
                    continue
                upstream.sendall(line)
