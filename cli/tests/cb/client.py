#!/usr/bin/env python3
"""A Containment Breach client written from its README's API alone (Python standard library).

Usage: client.py HOST:PORT

Checks, against a server whose lease timeout is a few seconds: two peers in peer mode each get
the other's UDP address and exchange a datagram over it; a client asking for an unknown server
gets an immediate error; malformed JSON gets an error and leaves the server up; a waiter gets
the timeout error when its lease ends. Exits non-zero on the first failed check.
"""

import json
import socket
import sys
import time


def udp_peer(server, peer_port):
    """A UDP socket that has told the server its address under `peer_port`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(10)
    s.sendto(json.dumps({"PeerPort": peer_port}).encode(), server)
    return s


def request(server, kind, remote_ip, remote_peer_port, local_peer_port):
    """A TCP connection that has sent one request."""
    c = socket.create_connection(server, timeout=10)
    c.sendall(json.dumps({
        "RemoteIP": remote_ip,
        "RemotePeerPort": remote_peer_port,
        "LocalPeerPort": local_peer_port,
        "ConnectionType": kind,
    }).encode())
    return c


def response(c):
    """The next JSON response on `c`."""
    buf = b""
    while b"\n" not in buf:
        chunk = c.recv(4096)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def check(cond, what):
    if not cond:
        print("FAILED:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    server = (host, int(port))

    # Peer mode: the first peer waits for the second; each learns the other's UDP address.
    a = udp_peer(server, 1)
    time.sleep(0.1)
    ca = request(server, "Peer", "127.0.0.1", 2, 1)
    b = udp_peer(server, 2)
    time.sleep(0.1)
    cb = request(server, "Peer", "127.0.0.1", 1, 2)
    ra, rb = response(ca), response(cb)
    check(ra["Error"] == "" and rb["Error"] == "", "peer mode: no error")
    check(ra["SourcePort"] == a.getsockname()[1] and ra["DestPort"] == b.getsockname()[1],
          "peer mode: the first peer's response names both UDP ports")
    check(rb["SourcePort"] == b.getsockname()[1] and rb["DestPort"] == a.getsockname()[1],
          "peer mode: the second peer's response names both UDP ports")
    a.sendto(b"hello from a", (ra["DestIP"], ra["DestPort"]))
    data, src = b.recvfrom(64)
    check(data == b"hello from a" and src[1] == a.getsockname()[1], "peer mode: a datagram a -> b")
    b.sendto(b"hello from b", (rb["DestIP"], rb["DestPort"]))
    data, _ = a.recvfrom(64)
    check(data == b"hello from b", "peer mode: a datagram b -> a")

    # A client of a server nobody registered: an error at once.
    udp_peer(server, 5)
    started = time.monotonic()
    r = response(request(server, "Client", "127.0.0.1", 4242, 5))
    check(r["Error"] != "" and time.monotonic() - started < 1.0, "unknown server: immediate error")

    # Malformed JSON: an error, and the server still answers.
    c = socket.create_connection(server, timeout=10)
    c.sendall(b"{\"ConnectionType\": Peer}\n")
    r = response(c)
    check(r["Error"] != "", "malformed JSON: an error")
    r = response(request(server, "Client", "127.0.0.1", 4242, 5))
    check(r["Error"] != "", "malformed JSON: the server is still up")

    # A waiter whose peer never comes: the timeout error when its lease ends.
    udp_peer(server, 7)
    time.sleep(0.1)
    started = time.monotonic()
    r = response(request(server, "Peer", "127.0.0.1", 8, 7))
    waited = time.monotonic() - started
    check("timeout" in r["Error"] and 0.5 < waited < 10, "lease timeout: the waiter's error")
    print("cb client: all checks passed", flush=True)


if __name__ == "__main__":
    main()
