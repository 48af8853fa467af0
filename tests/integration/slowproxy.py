#!/usr/bin/env python3
"""slowproxy.py - a throttling HTTP/1.1 reverse proxy for the integration tests.

  slowproxy.py --upstream HOST:PORT --rate BYTES_PER_S [--port-file FILE]

Listens on 127.0.0.1 on a free port (written to --port-file once the socket
listens, and printed on stdout) and forwards every request to the upstream
registry, one upstream connection per request.  Method, path, query and
all end-to-end request headers pass through unchanged (Range, Accept,
Authorization, Host ...), as do the status line and the response headers
(206 + Content-Range included); only hop-by-hop headers are dropped.

Throttling: the body of every GET of a blob (/v2/<name>/blobs/<digest>,
not an upload) is sent at most --rate bytes per second; the clock starts
with each response, and responses on one client connection are sequential,
so this is a per-connection limit.  Other responses (manifests, /v2/, HEAD)
are not delayed.

Client connections are HTTP/1.1 keep-alive when the client wants it and the
upstream response has a Content-Length; a body of unknown length is sent
with "Connection: close" and ends with the connection.  Each request is
logged on stderr: method, path, Range, status, body bytes, seconds.

python3 standard library only.
"""

import argparse
import http.client
import http.server
import os
import re
import sys
import threading
import time

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
BLOB_GET = re.compile(r"^/v2/.+/blobs/(sha256|sha512):[0-9a-f]+($|\?)")
PIECE = 16 * 1024
LOG_LOCK = threading.Lock()


def log(msg):
    with LOG_LOCK:
        sys.stderr.write("slowproxy: %s\n" % msg)
        sys.stderr.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = ("127.0.0.1", 0)
    rate = 0  # bytes/s, 0 = unlimited

    def log_message(self, fmt, *args):  # the default one logs every request twice
        pass

    def do_GET(self):
        self.forward()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def forward(self):
        t0 = time.monotonic()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(501, "chunked request bodies are not supported")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None

        up = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():  # items() keeps repeated headers
                if k.lower() not in HOP_BY_HOP:
                    up.putheader(k, v)
            up.endheaders(body)
            resp = up.getresponse()
        except OSError as e:
            up.close()
            log("%s %s: upstream: %s" % (self.command, self.path, e))
            self.send_error(502, "upstream: %s" % e)
            return

        sent = 0
        try:
            no_body = (self.command == "HEAD" or resp.status in (204, 304)
                       or 100 <= resp.status < 200)
            clen = resp.getheader("Content-Length")
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            if not no_body and clen is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not no_body:
                throttle = self.rate if (self.command == "GET" and resp.status in (200, 206)
                                         and BLOB_GET.match(self.path)) else 0
                start = time.monotonic()
                while True:
                    piece = resp.read(PIECE)
                    if not piece:
                        break
                    self.wfile.write(piece)
                    sent += len(piece)
                    if throttle:
                        ahead = sent / throttle - (time.monotonic() - start)
                        if ahead > 0:
                            time.sleep(ahead)
                if clen is not None and sent != int(clen):
                    # upstream cut the body short: the client must notice
                    self.close_connection = True
        except (BrokenPipeError, ConnectionResetError) as e:
            self.close_connection = True
            log("%s %s: client went away after %d bytes: %s" % (self.command, self.path, sent, e))
        finally:
            up.close()
        log("%s %s range=%s -> %d, %d bytes, %.2fs" % (
            self.command, self.path, self.headers.get("Range", "-"), resp.status, sent,
            time.monotonic() - t0))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, metavar="HOST:PORT")
    ap.add_argument("--rate", type=int, default=0, metavar="BYTES_PER_S",
                    help="blob body rate per connection (0: unlimited)")
    ap.add_argument("--port-file", metavar="FILE")
    a = ap.parse_args()

    host, _, port = a.upstream.rpartition(":")
    Handler.upstream = (host or "127.0.0.1", int(port))
    Handler.rate = a.rate
    srv = Server(("127.0.0.1", 0), Handler)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    print(port, flush=True)
    log("listening on 127.0.0.1:%d -> %s, blob rate %s B/s per connection" % (
        port, a.upstream, a.rate or "unlimited"))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
