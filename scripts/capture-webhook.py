#!/usr/bin/env python3
"""A recording admission webhook (maintainer tool, used by capture-fixtures.sh).

Serves HTTPS on a loopback address and answers every ``POST /mutate`` and ``POST /validate``
with an allow response
(``{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
"response": {"uid": <request uid>, "allowed": true}}``: no patch, no warnings). Before answering
it writes the request body, pretty-printed JSON with the keys in the order kube-apiserver sent
them, to the output directory as

    <kind>-<namespace>-<name>-<operation>[-dry-run].json      (lower case)

``-dry-run`` is added for requests with ``request.dryRun: true``; cluster-scoped objects have no
``<namespace>-`` part; an object created with ``generateName`` (no name yet) is named after its
generateName (trailing "-" removed). When the file already exists ``-2``, ``-3``, ... is added,
so nothing is ever overwritten. ``GET /healthz`` answers 200 (readiness probe).

Python 3 standard library only. Only loopback addresses are accepted for --address.

Usage: capture-webhook.py --cert CERT.pem --key KEY.pem --out DIR [--address 127.0.0.1] [--port N]
"""

import argparse
import ipaddress
import json
import os
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 8 * 1024 * 1024  # kube-apiserver's own limit for admission requests is 3 MiB + overhead

_lock = threading.Lock()


def _slug(value):
    """Lower-case, file-name-safe form of a Kubernetes name/kind/namespace."""
    value = str(value or "").strip().lower()
    return re.sub(r"[^a-z0-9.]+", "-", value).strip("-.")


def file_stem(review):
    """The capture file name (without .json) for one AdmissionReview."""
    request = review.get("request") or {}
    kind = (request.get("kind") or {}).get("kind") or "unknown"
    namespace = request.get("namespace") or ""
    name = request.get("name") or ""
    if not name:
        # CREATE with generateName: the API server has not chosen the name yet.
        for key in ("object", "oldObject"):
            meta = (request.get(key) or {}).get("metadata") or {}
            name = meta.get("name") or meta.get("generateName") or ""
            if name:
                break
        name = name.rstrip("-")
    parts = [_slug(kind)]
    if namespace:
        parts.append(_slug(namespace))
    parts.append(_slug(name) or "unnamed")
    parts.append(_slug(request.get("operation") or "unknown"))
    if request.get("dryRun"):
        parts.append("dry-run")
    return "-".join(parts)


def write_capture(out_dir, review):
    """Writes the review to a new file in out_dir; returns its path."""
    stem = file_stem(review)
    text = json.dumps(review, indent=2, ensure_ascii=False) + "\n"
    with _lock:
        n = 1
        while True:
            name = f"{stem}.json" if n == 1 else f"{stem}-{n}.json"
            path = os.path.join(out_dir, name)
            if not os.path.exists(path):
                break
            n += 1
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


class Handler(BaseHTTPRequestHandler):
    server_version = "capture-webhook/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("capture-webhook: %s %s\n" % (self.address_string(), fmt % args))

    def _reply(self, code, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/healthz":
            self._reply(200, b"ok\n", "text/plain")
        else:
            self._reply(404, b"not found\n", "text/plain")

    def do_POST(self):
        if self.path.split("?", 1)[0] not in ("/mutate", "/validate"):
            self._reply(404, b"not found\n", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._reply(413, b"bad or too large body\n", "text/plain")
            return
        body = self.rfile.read(length)
        try:
            review = json.loads(body)
            uid = review["request"]["uid"]
        except (ValueError, KeyError, TypeError) as e:
            self._reply(400, f"not an AdmissionReview: {e}\n".encode(), "text/plain")
            return
        path = write_capture(self.server.out_dir, review)
        sys.stderr.write(f"capture-webhook: wrote {os.path.basename(path)}\n")
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
        self._reply(200, json.dumps(answer))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    p.add_argument("--cert", required=True, help="PEM serving certificate (chain)")
    p.add_argument("--key", required=True, help="PEM private key")
    p.add_argument("--out", required=True, help="directory the captured requests are written to")
    args = p.parse_args()

    if not ipaddress.ip_address(args.address).is_loopback:
        p.error(f"--address {args.address} is not a loopback address")
    os.makedirs(args.out, exist_ok=True)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    server.daemon_threads = True
    server.out_dir = args.out
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    host, port = server.server_address[:2]
    # The port on stdout (first line) for callers that passed --port 0.
    print(f"listening https://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
