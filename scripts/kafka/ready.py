#!/usr/bin/env python3
"""Waits until a Kafka broker answers a metadata request listing at least N brokers.

    ready.py HOST:PORT [N] [SECONDS]

Speaks the Kafka protocol itself (Metadata v4, no topics) so that it needs no client library and
no JVM start-up. Exits 0 once the answer lists N brokers (default 1), 1 after SECONDS (default 60).
"""
import socket
import struct
import sys
import time


def metadata_brokers(host, port):
    client = b"ready"
    # Header v1: api key 3 (Metadata), version 4, correlation id, client id.
    header = struct.pack(">hhih", 3, 4, 1, len(client)) + client
    # Body v4: topics = null (-1 → all; an empty array asks for none), allow auto-creation = false.
    body = struct.pack(">ib", 0, 0)
    request = header + body
    with socket.create_connection((host, port), timeout=2) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", read(conn, 4))[0]
        answer = read(conn, size)
    # correlation id, throttle time, then the brokers array.
    count = struct.unpack_from(">i", answer, 8)[0]
    return count


def read(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 60)
    while time.monotonic() < deadline:
        try:
            if metadata_brokers(host, int(port)) >= want:
                return 0
        except (OSError, ConnectionError, struct.error):
            pass
        time.sleep(0.1)
    return 1


sys.exit(main())
