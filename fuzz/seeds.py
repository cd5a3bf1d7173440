#!/usr/bin/env python3
"""Adds the fuzz targets' seed inputs to fuzz/corpus/<target>/ from the repository's fixtures:
the platforms' signature vectors and payloads, the example configuration and tenants files, and
the URL spellings the delivery guard must see through. Files are named by their digest, so
running it again adds nothing twice; the fuzzer's own finds join them in the same folders."""
import glob
import hashlib
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
# The order of `providers::all()` (src/providers/mod.rs).
PROVIDERS = ["shopify", "salla", "zid", "easyorders", "vendera", "flexype", "shopimind",
             "sprusify", "shopery", "standard"]
FOLDERS = {"standard-webhooks": "standard"}


def write(target, data):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def delivery(provider, secret, now, headers, body):
    block = f"{secret} {now}\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())
    return bytes([PROVIDERS.index(provider)]) + block.encode() + b"\n" + body


def provider_seeds():
    fixtures = os.path.join(ROOT, "tests", "fixtures", "providers")
    for path in sorted(glob.glob(os.path.join(fixtures, "*", "vectors.json"))):
        folder = os.path.basename(os.path.dirname(path))
        provider = FOLDERS.get(folder, folder)
        vectors = json.load(open(path))
        for group in ("official", "derived"):
            for v in vectors.get(group, []):
                if "secret" not in v or "headers" not in v:
                    continue
                if "body_file" in v:
                    body = open(os.path.join(os.path.dirname(path), v["body_file"]), "rb").read()
                else:
                    body = (v.get("body") or "").encode()
                stamp = next((h for k, h in v["headers"].items()
                              if k.lower().endswith("timestamp")), "0")
                now = stamp if str(stamp).isdigit() else "0"
                write("provider", delivery(provider, v["secret"], now, v["headers"], body))
    for path in sorted(glob.glob(os.path.join(fixtures, "*", "*.json"))):
        if path.endswith("vectors.json"):
            continue
        folder = os.path.basename(os.path.dirname(path))
        name = os.path.basename(path)
        provider = FOLDERS.get(folder, folder)
        if provider not in PROVIDERS:
            provider = next((p for p in PROVIDERS if name.startswith(p)), None)
        if provider:
            body = open(path, "rb").read()
            write("provider", delivery(provider, "fuzzing-secret-0123456789", 0, {}, body))


def route_seeds():
    for path in ["/api/webhooks/shopify", "/api/webhooks/salla/", "/api/webhooks/zid/key-1",
                 "/api/webhooks/vendera/key-1/", "/api/webhooks//x", "/healthz", "/readyz",
                 "/api/webhooks/a/b/c", "/"]:
        write("route", path.encode())


def tenants_seeds():
    for path in glob.glob(os.path.join(ROOT, "config", "tenants*.toml")):
        write("tenants", open(path, "rb").read())
    for path in glob.glob(os.path.join(ROOT, "tests", "**", "*.toml"), recursive=True):
        text = open(path, "rb").read()
        if b"[[tenant]]" in text:
            write("tenants", text)


def config_seeds():
    # Each line of the example configuration as an environment override (`SECTION__KEY=VALUE`).
    section = None
    lines = []
    for line in open(os.path.join(ROOT, "config", "example.toml")):
        line = line.strip()
        if m := re.match(r"^\[([a-z_.]+)\]$", line):
            section = m.group(1).replace(".", "__").upper()
        elif section and (m := re.match(r"^([a-z_]+)\s*=\s*(.+)$", line)):
            lines.append(f"{section}__{m.group(1).upper()}={m.group(2)}")
    for i in range(0, len(lines), 4):
        write("config", "\n".join(lines[i:i + 4]).encode())


def retry_after_seeds():
    now = struct.pack("<q", 1_790_000_000_000)
    for value in ["120", " 0 ", "Wed, 21 Oct 2026 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                  "Sun Nov  6 08:49:37 1994", "18446744073709551615", "-1", "1.5"]:
        write("retry_after", now + value.encode())
    write("retry_after", struct.pack("<q", -1) + b"Wed, 21 Oct 2026 07:28:00 GMT")


def url_guard_seeds():
    for url in ["http://2130706433/", "http://127.1/", "http://0/", "http://0x7f000001/",
                "http://0177.0.0.1/", "http://127.0.0.1./", "http://[::1]:8080/hook",
                "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::7f00:1]/", "https://example.com/h?t=1",
                "http://user:pw@10.0.0.1:80/x", "http://169.254.169.254/latest/meta-data"]:
        write("url_guard", url.encode())


def signal_seeds():
    # Bodies as tests/it/tracking.rs and docs/tracking.md send them.
    for body in [
        {"publishable_key": "pk_acme_0123456789abcdef", "event": "add_to_cart", "cart_token": "c1-7a2b",
         "cart_value": "42.50", "currency": "SAR", "item_count": 2},
        {"event": "cart_viewed", "cart_token": "gid://shopify/Cart/c1-abc?key=5f2e", "event_id": "evt-1"},
        {"event": "checkout_started", "cart_token": "Z2NwLXVz%3Fkey%3D9f", "cart_value": 12.5},
        {"event": "purchase", "cart_token": "c"},
        {"event": "add_to_cart", "cart_token": "t", "customer": {"email": "a@example.com"},
         "recovery_url": "https://example.com", "occurred_at": "2020-01-01T00:00:00Z"},
    ]:
        write("signal", json.dumps(body).encode())
    write("signal", b"not json")


def origin_seeds():
    for origin in ["https://shop.example", "https://Shop.Example/", "https://shop.example:443",
                   "http://localhost:3000", "http://127.0.0.1:8080/", "https://a-b.c1.example:65535",
                   "https://shop.example/cart", "null", "*", "http://[::1]:3000", "https://u@shop.example"]:
        write("origin", origin.encode())


if __name__ == "__main__":
    provider_seeds()
    route_seeds()
    tenants_seeds()
    config_seeds()
    retry_after_seeds()
    url_guard_seeds()
    signal_seeds()
    origin_seeds()
    for target in sorted(os.listdir(OUT)):
        print(target, len(os.listdir(os.path.join(OUT, target))))
