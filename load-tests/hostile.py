#!/usr/bin/env python3
"""Hostile clients beside a load run (load-tests/soak.sh): connections that never send a byte,
request heads sent a byte at a time, bodies trickled, bodies over the size limit, and unsigned
or garbage webhooks. Each kind runs a fixed number of clients in a loop and counts how the
daemon ended each attempt. The daemon must end every one of them by itself (a timeout, a 413, a
401/400) while the load run's correctly signed webhooks go on being answered 200.

    hostile.py HOST PORT SECONDS [--idle N] [--slow-heads N] [--slow-bodies N] [--oversized N]
               [--forged N] [--max-body BYTES] [--out FILE]

Prints a JSON summary (and writes it to --out): per kind, attempts, how they ended, and the
seconds the daemon took to end them (median, max).
"""
import argparse
import asyncio
import json
import os
import statistics
import time

SLOW_HEAD = (b"POST /api/webhooks/shopify HTTP/1.1\r\nHost: x\r\n"
             b"X-Shopify-Topic: checkouts/update\r\nX-Shopify-Hmac-Sha256: AAAA\r\n")


class Tally:
    def __init__(self):
        self.ended = {}
        self.took = []

    def add(self, how, took):
        self.ended[how] = self.ended.get(how, 0) + 1
        self.took.append(took)

    def summary(self):
        took = sorted(self.took)
        return {
            "attempts": len(took),
            "ended": dict(sorted(self.ended.items())),
            "seconds_to_end_median": round(statistics.median(took), 3) if took else None,
            "seconds_to_end_max": round(took[-1], 3) if took else None,
        }


async def answer_or_close(reader):
    """How the daemon ended the attempt: `status NNN` from the first answer line, or `closed`."""
    try:
        line = await reader.readline()
    except (ConnectionError, OSError):
        return "reset"
    if not line:
        return "closed"
    parts = line.split()
    return f"status {parts[1].decode()}" if len(parts) > 1 else "garbage"


async def idle(host, port, until, tally):
    """Connects and sends nothing."""
    while time.monotonic() < until:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        how = await answer_or_close(reader)
        tally.add(how, time.monotonic() - started)
        writer.close()


async def slow_head(host, port, until, tally):
    """Sends a request head one byte every half second: never completes it in time."""
    while time.monotonic() < until:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        how = None
        for byte in SLOW_HEAD * 100:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, OSError):
                how = "reset"
                break
            try:
                how = await asyncio.wait_for(answer_or_close(reader), 0.5)
                break
            except asyncio.TimeoutError:
                continue
        tally.add(how or "never ended", time.monotonic() - started)
        writer.close()


async def slow_body(host, port, until, tally):
    """Sends a complete head announcing 100 kB, then 10 bytes a second."""
    while time.monotonic() < until:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(SLOW_HEAD + b"Content-Length: 100000\r\n\r\n")
        how = None
        for _ in range(10_000):
            try:
                writer.write(b"{" * 10)
                await writer.drain()
            except (ConnectionError, OSError):
                how = "reset"
                break
            try:
                how = await asyncio.wait_for(answer_or_close(reader), 1.0)
                break
            except asyncio.TimeoutError:
                continue
        tally.add(how or "never ended", time.monotonic() - started)
        writer.close()


async def oversized(host, port, until, tally, max_body):
    """Announces and sends a body one byte over the limit."""
    body = b"x" * (max_body + 1)
    while time.monotonic() < until:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(SLOW_HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode())
        try:
            writer.write(body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        how = await answer_or_close(reader)
        tally.add(how, time.monotonic() - started)
        writer.close()
        await asyncio.sleep(0.5)


async def forged(host, port, until, tally):
    """Unsigned, garbage and wrongly signed webhooks to every provider, on one connection."""
    kinds = [
        (b"shopify", b"X-Shopify-Hmac-Sha256: bm9wZQ==\r\nX-Shopify-Shop-Domain: load-00001.myshopify.com\r\n", b'{"id":1}'),
        (b"salla", b"X-Salla-Signature: 00\r\nX-Salla-Security-Strategy: Signature\r\n", b'{"merchant":1000000001}'),
        (b"zid", b"", os.urandom(64)),
        (b"standard", b"webhook-id: x\r\nwebhook-timestamp: 18446744073709551615\r\nwebhook-signature: v1,AAAA\r\n", b"{}"),
        (b"nope", b"", b"{}"),
    ]
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    while time.monotonic() < until:
        slug, headers, body = kinds[i % len(kinds)]
        i += 1
        started = time.monotonic()
        writer.write(b"POST /api/webhooks/" + slug + b" HTTP/1.1\r\nHost: x\r\n" + headers
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        how = await answer_or_close(reader)
        if how.startswith("status"):
            # Skip the rest of the answer: headers, then a body of Content-Length bytes.
            length = 0
            while True:
                line = await reader.readline()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line in (b"\r\n", b""):
                    break
            await reader.readexactly(length)
        else:
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        tally.add(how, time.monotonic() - started)
        await asyncio.sleep(0.05)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--slow-heads", type=int, default=50)
    parser.add_argument("--slow-bodies", type=int, default=50)
    parser.add_argument("--oversized", type=int, default=2)
    parser.add_argument("--forged", type=int, default=4)
    parser.add_argument("--max-body", type=int, default=1 << 20)
    parser.add_argument("--out")
    args = parser.parse_args()
    until = time.monotonic() + args.seconds
    tallies = {kind: Tally() for kind in ["idle", "slow_head", "slow_body", "oversized", "forged"]}
    clients = (
        [idle(args.host, args.port, until, tallies["idle"]) for _ in range(args.idle)]
        + [slow_head(args.host, args.port, until, tallies["slow_head"]) for _ in range(args.slow_heads)]
        + [slow_body(args.host, args.port, until, tallies["slow_body"]) for _ in range(args.slow_bodies)]
        + [oversized(args.host, args.port, until, tallies["oversized"], args.max_body)
           for _ in range(args.oversized)]
        + [forged(args.host, args.port, until, tallies["forged"]) for _ in range(args.forged)]
    )
    await asyncio.gather(*clients)
    summary = {kind: tally.summary() for kind, tally in tallies.items()}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
