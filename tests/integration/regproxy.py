#!/usr/bin/env python3
"""regproxy.py - a registry front for the integration tests: auth, redirects,
faults and throttling in front of a real docker-registry.

  regproxy.py --upstream HOST:PORT [options] [--plan FILE]

Listens on 127.0.0.1 (port written to --port-file once listening, and
printed on stdout) and forwards requests to the upstream registry, one
upstream connection per request.  Method, path, query and end-to-end
headers pass through (Range, Accept, ...), except Authorization, which is
this server's business.  Every request is logged on stderr
("regproxy: GET /v2/... range=bytes=0-9 -> 206, 10 bytes, 0.01s") and, with
--log FILE, as one JSON object per line (listener, method, path, range,
status, bytes, auth scheme, fault, "t": when the request arrived, in
seconds on a monotonic clock, "secs": how long its handler ran, "t_last":
when the last body byte was written) for the tests to count and time
things in.

Behaviours (options, or the same keys in a JSON --plan file; options win):

  --rate B        blob bodies at most B bytes/s per connection (0: no limit)
  --auth MODE     none | bearer | basic
  --users U:P,..  credentials accepted (basic auth to the registry, or to
                  /token); without it /token hands out anonymous tokens
  --identity-token T  refresh token accepted by POST /token
                  (grant_type=refresh_token) and GET /token?refresh_token=
  --token-lifetime S  bearer token lifetime (expires_in), default 60
  --token-uses N  a bearer token is good for N requests (0: no limit)
  --revoke-every N  every N-th blob request revokes every bearer token
                  issued so far (that request is refused too, with 401):
                  tokens invalidated server-side while chunks are in flight
  --ecr-403       an expired/unknown bearer token gets 403 without a
                  challenge (as ECR does), not 401
  --redirect CODE blob GETs (200/206 would-be) answered CODE (302, 307...)
                  with a Location on a second listener (the "store",
                  another port) serving the blob with Range support
  --url-uses N    a store URL works N times, then 403 (0: forever)
  --url-ttl S     a store URL works S seconds, then 403 (0: forever)
  --tls-cert F --tls-key F  serve HTTPS on both listeners
  --seed N        seed of the fault dice (deterministic plans)
  --host ADDR     listen on ADDR (default 127.0.0.1; ::1 for IPv6)

The store logs "AUTHORIZATION LEAKED" and answers 400 when a request
carries an Authorization header: credentials must never reach it.

Faults: the plan's "faults" is a list of rules, each
  {"fault": F, "kind": "blob"|"manifest"|"store"|"token"|"any",
   "match": REGEX on the path (optional), "after": skip the first N
   matching requests, "count": hit at most M of them (default: all),
   "every": hit every K-th match (default 1), "prob": P (seeded dice),
   "retry_after": S (429), "status": CODE (for "status")}
with F one of: 429 (Retry-After), 500, 503, status, 404 (registry error
body), ignore-range (200 + whole body), reset (RST mid-body), truncate
(half the body, then close), bad-range (Content-Range shifted by one),
stall (half the body, then silence for "stall_s" seconds, then close).
A rule applies to a request where the proxy would otherwise forward it to
the upstream (the registry listener, or the store for "store").

python3 standard library only.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import random
import re
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
BLOB_GET = re.compile(r"^/v2/(.+)/blobs/((?:sha256|sha512):[0-9a-f]+)($|\?)")
MANIFEST = re.compile(r"^/v2/(.+)/manifests/")
REPO = re.compile(r"^/v2/(.+)/(?:blobs|manifests|tags)/")
PIECE = 16 * 1024
LOCK = threading.Lock()


class Plan:
    """Everything configurable, shared by all handler threads."""

    def __init__(self, d):
        self.upstream = d["upstream"]
        self.rate = int(d.get("rate", 0))
        self.auth = d.get("auth", "none")
        self.users = set(u for u in d.get("users", []) if u)
        self.identity_token = d.get("identity_token")
        self.lifetime = float(d.get("token_lifetime", 60))
        self.ecr403 = bool(d.get("ecr_403", False))
        self.token_uses = int(d.get("token_uses", 0))
        self.revoke_every = int(d.get("revoke_every", 0))
        self.blob_requests = 0
        self.redirect = int(d.get("redirect", 0))
        self.url_uses = int(d.get("url_uses", 0))
        self.url_ttl = float(d.get("url_ttl", 0))
        self.tls = bool(d.get("tls_cert"))
        self.faults = d.get("faults", [])
        for r in self.faults:
            r["_seen"] = 0
            r["_hits"] = 0
        self.rng = random.Random(int(d.get("seed", 0)))
        self.tokens = {}  # token -> [issue time, uses]
        self.urls = {}  # store URL id -> [path, created, uses]
        self.logf = open(d["log"], "a", buffering=1) if d.get("log") else None
        self.host = d.get("host") or "127.0.0.1"
        self.port = 0
        self.store_port = 0

    def log(self, rec):
        with LOCK:
            sys.stderr.write("regproxy: %s %s%s range=%s -> %d, %d bytes, %.2fs%s\n" % (
                rec["method"], "[store] " if rec["listener"] == "store" else "", rec["path"],
                rec.get("range") or "-", rec["status"], rec.get("bytes", 0), rec.get("secs", 0),
                " fault=%s" % rec["fault"] if rec.get("fault") else ""))
            sys.stderr.flush()
            if self.logf:
                self.logf.write(json.dumps(rec) + "\n")

    def pick_fault(self, kind, path):
        with LOCK:
            for r in self.faults:
                k = r.get("kind", "any")
                if k != "any" and k != kind:
                    continue
                if r.get("match") and not re.search(r["match"], path):
                    continue
                r["_seen"] += 1
                if r["_seen"] <= int(r.get("after", 0)):
                    continue
                if "count" in r and r["_hits"] >= int(r["count"]):
                    continue
                if (r["_seen"] - int(r.get("after", 0)) - 1) % int(r.get("every", 1)):
                    continue
                if "prob" in r and self.rng.random() >= float(r["prob"]):
                    continue
                r["_hits"] += 1
                return r
        return None

    def scheme(self):
        return "https" if self.tls else "http"

    def url_host(self):
        return "[%s]" % self.host if ":" in self.host else self.host

    # ---- tokens
    def new_token(self):
        t = secrets.token_hex(24)
        with LOCK:
            self.tokens[t] = [time.monotonic(), 0]
        return t

    def maybe_revoke(self):
        """Count a blob request; True when it revoked every token."""
        with LOCK:
            self.blob_requests += 1
            if not self.revoke_every or self.blob_requests % self.revoke_every:
                return False
            self.tokens.clear()
            return True

    def token_valid(self, t):
        with LOCK:
            tok = self.tokens.get(t)
            if tok is None:
                return False
            tok[1] += 1
            if self.token_uses and tok[1] > self.token_uses:
                return False
            return time.monotonic() - tok[0] < self.lifetime

    # ---- store URLs
    def new_url(self, upstream_path):
        uid = secrets.token_hex(8)
        with LOCK:
            self.urls[uid] = [upstream_path, time.monotonic(), 0]
        return uid

    def use_url(self, uid):
        """The upstream path of store URL uid, or None when unknown/expired."""
        with LOCK:
            u = self.urls.get(uid)
            if u is None:
                return None
            u[2] += 1
            if self.url_uses and u[2] > self.url_uses:
                return None
            if self.url_ttl and time.monotonic() - u[1] > self.url_ttl:
                return None
            return u[0]


def basic_user(header):
    """"user:password" of an Authorization: Basic header, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    plan = None
    listener = "registry"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        t0 = time.monotonic()
        self.rec = {"t": round(t0, 4), "listener": self.listener, "method": self.command,
                    "path": self.path,
                    "range": self.headers.get("Range"), "status": 0, "bytes": 0,
                    "auth": (self.headers.get("Authorization") or " ").split(" ")[0]}
        try:
            if self.listener == "store":
                self.store()
            else:
                self.registry()
        except (BrokenPipeError, ConnectionResetError) as e:
            self.close_connection = True
            if self.rec:
                self.rec["error"] = str(e)
        if self.rec:  # a stall logs its request before it goes silent
            self.rec["secs"] = round(time.monotonic() - t0, 3)
            self.plan.log(self.rec)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ---- small answers
    def answer(self, status, body=b"", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.rec["status"] = status
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.rec["bytes"] = len(body)

    def reg_error(self, status, code, msg, headers=()):
        body = json.dumps({"errors": [{"code": code, "message": msg}]})
        self.answer(status, body, [("Content-Type", "application/json")] + list(headers))

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # ---- registry listener
    def registry(self):
        p = self.plan
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            return self.token()
        if BLOB_GET.match(self.path) and p.maybe_revoke():
            self.rec["revoked"] = True
        if not self.authorized():
            return
        kind = "blob" if BLOB_GET.match(self.path) else (
            "manifest" if MANIFEST.match(self.path) else "other")
        m = BLOB_GET.match(self.path)
        if m and p.redirect and self.command in ("GET", "HEAD"):
            uid = p.new_url("/v2/%s/blobs/%s" % (m.group(1), m.group(2)))
            loc = "%s://%s:%d/store/%s/%s?u=%s" % (
                p.scheme(), p.url_host(), p.store_port, m.group(1), m.group(2), uid)
            self.rec["redirect"] = loc
            return self.answer(p.redirect, "", [("Location", loc)])
        self.forward(self.path, kind)

    def challenge(self):
        p = self.plan
        if p.auth == "basic":
            return 'Basic realm="regproxy"'
        m = REPO.match(self.path)
        scope = ',scope="repository:%s:pull"' % m.group(1) if m else ""
        return 'Bearer realm="%s://%s:%d/token",service="regproxy"%s' % (
            p.scheme(), p.url_host(), p.port, scope)

    def authorized(self):
        p = self.plan
        if p.auth == "none":
            return True
        h = self.headers.get("Authorization") or ""
        if p.auth == "basic":
            ok = basic_user(h) in p.users
        else:
            ok = h.lower().startswith("bearer ") and p.token_valid(h[7:].strip())
            if not ok and p.ecr403 and h:
                self.rec["denied"] = "expired"
                self.reg_error(403, "DENIED", "token expired")
                return False
        if ok:
            return True
        self.reg_error(401, "UNAUTHORIZED", "authentication required",
                       [("WWW-Authenticate", self.challenge())])
        return False

    def token(self):
        p = self.plan
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if self.command == "POST":
            q.update(urllib.parse.parse_qs(self.read_body().decode(errors="replace")))
        one = lambda k: (q.get(k) or [None])[0]
        self.rec["kind"] = "token"
        self.rec["grant"] = one("grant_type") or ("refresh_token" if one("refresh_token") else
                                                   ("basic" if basic_user(self.headers.get("Authorization")) else "anonymous"))
        ok = not p.users and not p.identity_token
        if p.identity_token and one("refresh_token") == p.identity_token:
            ok = True
        if basic_user(self.headers.get("Authorization")) in p.users:
            ok = True
        if one("grant_type") == "password" and "%s:%s" % (one("username"), one("password")) in p.users:
            ok = True
        if not ok:
            return self.reg_error(401, "UNAUTHORIZED", "bad credentials",
                                  [("WWW-Authenticate", 'Basic realm="regproxy-token"')])
        t = p.new_token()
        self.rec["token"] = t  # so tests can check it never leaks into output
        body = {"token": t, "access_token": t, "expires_in": int(p.lifetime),
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.answer(200, json.dumps(body), [("Content-Type", "application/json")])

    # ---- store listener
    def store(self):
        p = self.plan
        if self.headers.get("Authorization"):
            self.rec["leak"] = True
            with LOCK:
                sys.stderr.write("regproxy: AUTHORIZATION LEAKED to the store: %s\n" % self.path)
            return self.answer(400, "Authorization header sent to the blob store\n")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        up = p.use_url((q.get("u") or [""])[0])
        if up is None:
            self.rec["expired"] = True
            return self.answer(403, "<Error><Code>AccessDenied</Code>"
                                    "<Message>Request has expired</Message></Error>")
        self.forward(up, "store")

    # ---- forwarding, with faults
    def forward(self, upath, kind):
        p = self.plan
        fault = p.pick_fault(kind, upath)
        f = fault["fault"] if fault else None
        if f:
            self.rec["fault"] = f
        if f in ("429", "500", "503", "status", "404"):
            self.read_body()
            if f == "429":
                return self.reg_error(429, "TOOMANYREQUESTS", "slow down",
                                      [("Retry-After", str(fault.get("retry_after", 1)))])
            if f == "404":
                return self.reg_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return self.answer(int(fault.get("status", f if f != "status" else 500)), "fault\n")
        body = self.read_body() if self.command not in ("GET", "HEAD") else None
        up = http.client.HTTPConnection(*p.upstream, timeout=120)
        try:
            up.putrequest(self.command, upath, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                lk = k.lower()
                if lk in HOP_BY_HOP or lk == "authorization":
                    continue
                if lk == "range" and f == "ignore-range":
                    continue
                if lk == "host":
                    v = "%s:%d" % p.upstream
                up.putheader(k, v)
            up.endheaders(body)
            resp = up.getresponse()
        except OSError as e:
            up.close()
            return self.answer(502, "upstream: %s\n" % e)
        try:
            self.relay(resp, kind, f, fault)
        finally:
            up.close()

    def relay(self, resp, kind, f, fault):
        p = self.plan
        no_body = (self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200)
        clen = resp.getheader("Content-Length")
        self.rec["status"] = resp.status
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if lk == "content-range" and f == "bad-range":
                m = re.match(r"bytes (\d+)-(\d+)/(\d+)", v)
                if m:
                    v = "bytes %d-%d/%s" % (int(m.group(1)) + 1, int(m.group(2)) + 1, m.group(3))
            self.send_header(k, v)
        if not no_body and clen is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            return
        cut = None
        if f in ("reset", "truncate", "stall") and clen is not None:
            cut = int(clen) // 2
        throttle = p.rate if (kind in ("blob", "store") and resp.status in (200, 206)) else 0
        start = time.monotonic()
        sent = 0
        while True:
            piece = resp.read(PIECE)
            if not piece:
                break
            if cut is not None and sent + len(piece) > cut:
                piece = piece[:cut - sent]
            self.wfile.write(piece)
            sent += len(piece)
            self.rec["bytes"] = sent
            self.rec["t_last"] = round(time.monotonic(), 4)  # before any throttle sleep
            if cut is not None and sent >= cut:
                break
            if throttle:
                ahead = sent / throttle - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            if f == "stall":
                rec, self.rec = self.rec, None
                p.log(rec)
                time.sleep(float(fault.get("stall_s", 5)))
            if f == "reset":  # RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
        elif clen is not None and sent != int(clen):
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def shutdown_request(self, request):
        """socketserver's, except for a socket set to linger 0 (a "reset"
        fault): its shutdown(SHUT_WR) would send a FIN before the RST, and
        the client would see the body end early, not a reset."""
        try:
            on, secs = struct.unpack("ii", request.getsockopt(socket.SOL_SOCKET,
                                                              socket.SO_LINGER, 8))
        except OSError:
            on = secs = 0
        if on and not secs:
            self.close_request(request)
        else:
            super().shutdown_request(request)


class Server6(Server):
    address_family = socket.AF_INET6


def serve(plan, listener, ctx):
    h = type("H_" + listener, (Handler,), {"plan": plan, "listener": listener})
    srv = (Server6 if ":" in plan.host else Server)((plan.host, 0), h)
    if ctx:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", metavar="HOST:PORT")
    ap.add_argument("--plan", metavar="FILE", help="JSON object with the keys below")
    ap.add_argument("--port-file", metavar="FILE")
    ap.add_argument("--store-port-file", metavar="FILE")
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--rate", type=int)
    ap.add_argument("--auth", choices=["none", "bearer", "basic"])
    ap.add_argument("--users", metavar="U:P,...")
    ap.add_argument("--identity-token")
    ap.add_argument("--token-lifetime", type=float)
    ap.add_argument("--ecr-403", action="store_true", default=None)
    ap.add_argument("--token-uses", type=int)
    ap.add_argument("--revoke-every", type=int)
    ap.add_argument("--redirect", type=int)
    ap.add_argument("--url-uses", type=int)
    ap.add_argument("--url-ttl", type=float)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--host")
    a = ap.parse_args()

    d = {}
    if a.plan:
        with open(a.plan) as f:
            d = json.load(f)
    for k, v in vars(a).items():
        if v is not None and k not in ("plan", "port_file", "store_port_file"):
            d[k] = v
    if isinstance(d.get("users"), str):
        d["users"] = d["users"].split(",")
    if not d.get("upstream"):
        ap.error("--upstream is required")
    host, _, port = d["upstream"].rpartition(":")
    d["upstream"] = (host or "127.0.0.1", int(port))
    plan = Plan(d)
    ctx = None
    if plan.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d["tls_cert"], d.get("tls_key"))
    plan.store_port = serve(plan, "store", ctx)
    plan.port = serve(plan, "registry", ctx)
    for name, port in ((a.store_port_file, plan.store_port), (a.port_file, plan.port)):
        if name:
            with open(name + ".tmp", "w") as f:
                f.write("%d\n" % port)
            os.rename(name + ".tmp", name)
    print(plan.port, flush=True)
    with LOCK:
        sys.stderr.write("regproxy: listening on %s://%s:%d (store :%d) -> %s:%d, "
                         "auth %s, blob rate %s B/s\n" % (plan.scheme(), plan.url_host(), plan.port,
                                                          plan.store_port,
                                                          *plan.upstream, plan.auth,
                                                          plan.rate or "unlimited"))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
