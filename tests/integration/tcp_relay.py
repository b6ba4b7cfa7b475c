"""A TCP relay: `python3 tcp_relay.py LISTEN_HOST:PORT TARGET_HOST:PORT`.

Prints `listening` once the socket is bound, then copies bytes both ways for each
connection until it is stopped. The private test engine uses it to reach a registry
on this host's loopback from its own network namespace.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def pipe(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
    """Copy src -> dst; at src's end of data pass the half-close on; close when both ended."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    finally:
        with contextlib.suppress(threading.BrokenBarrierError):
            if done.wait() == 0:
                src.close()
                dst.close()


def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = socket.create_server(listen, reuse_port=False)
    print("listening", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=30)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        done = threading.Barrier(2)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b, done), daemon=True).start()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    serve(address(sys.argv[1]), address(sys.argv[2]))
