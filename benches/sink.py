#!/usr/bin/env python3
"""A webhook receiver for the benchmarks: `sink.py PORT LOG` answers every POST
with 200 and appends "<bytes> <events>" per request to LOG; `sink.py --hang PORT`
accepts connections and never answers (the worst endpoint: it neither refuses
nor times out quickly). Listens on 127.0.0.1 (run it inside the bench's namespace)."""
import http.server, json, socket, sys, threading

if sys.argv[1] == "--hang":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[2])))
    s.listen(1024)
    print("ready", flush=True)
    held = []
    while True:
        c, _ = s.accept()
        held.append(c)  # never read, never answered, never closed

log = open(sys.argv[2], "a")
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        # Answer first, as a quick receiver would; count the events after.
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()
        v = json.loads(body)
        n = len(v["events"]) if v.get("event") == "summary" else 1
        with lock:
            log.write(f"{len(body)} {n}\n")
            log.flush()
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
