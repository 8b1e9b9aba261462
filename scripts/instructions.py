"""Instructions and allocations per warm request, for scripts/bench.

Wall-clock figures on a shared two-core machine drift with everyone else's
load; counted instructions do not. Each server runs under valgrind's callgrind
(instructions, and calls into malloc and friends as heap allocations), one
keep-alive client sends N warm
requests, and the same run with 0 requests (idling as long) is subtracted,
so timers and periodic upkeep cancel out; only the interval of the
requests is counted (counters zeroed before, dumped after), so start-up, the
cold STS call, connecting and shutting down stay out. nginx serves the same
body behind the same token check in the same run, as the yardstick.

    scripts/bench instructions     # only this part (~2 minutes)

Set BENCH_KEEP=DIR to keep the callgrind files (read them with
callgrind_annotate)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))
KEEP = os.environ.get("BENCH_KEEP")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KeepAlive:
    """One HTTP/1.1 connection, one request at a time, answers read whole."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method, path, headers):
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            self.read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
        while len(self.buffer) < length:
            self.read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def read(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self):
        self.sock.close()


def wait_until_listening(port, process, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server under valgrind exited early ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listened on {port} within {limit} s")


def valgrind(out):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={out}.log"]


def callgrind_control(option, pid):
    subprocess.run(["callgrind_control", option, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# The allocator's entry points: calls to these are heap allocations.
ALLOCATORS = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}


def measured(out):
    """Instructions and heap allocations (calls into malloc and friends) in
    the dump taken at the end of the measured interval."""
    names, current, allocations, instructions = {}, None, 0, None
    with open(out + ".1") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                key, _, name = line.rstrip("\n").partition(" ")
                ident = key.split("=", 1)[1]
                if name:
                    names[ident] = name
                if line.startswith("cfn="):
                    current = names.get(ident, "").split("'")[0]
            elif line.startswith("calls=") and current in ALLOCATORS:
                allocations += int(line[6:].split()[0])
            elif line.startswith("summary:"):
                instructions = int(line.split()[1])
    return instructions, allocations


def run(argv, port, env, exercise, out):
    """Starts `argv` under callgrind, lets `exercise(port, interval)` talk to
    it, stops it with SIGTERM and returns the count. `interval` brackets the
    measured part: callgrind's counters are zeroed at its start and dumped at
    its end, so start-up, lazy one-time set-up (quanta's clock calibration,
    whose cost varies run to run) and shutdown stay out of the count."""
    process = subprocess.Popen(valgrind(out) + argv, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    class Interval:
        def __enter__(self):
            callgrind_control("--zero", process.pid)

        def __exit__(self, *_):
            callgrind_control("--dump", process.pid)

    try:
        wait_until_listening(port, process)
        exercise(port, Interval())
    finally:
        stop(process)
    return measured(out)


def stop(process, limit=120):
    """SIGTERM, repeated: under valgrind a signal that lands while nginx is
    between two epoll_waits can be taken without waking it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    raise SystemExit("a server under valgrind did not stop on SIGTERM")


# Warm requests on every connection before the measured interval, in both
# runs: lazily built state (the IMDS body, metric handles' first samples)
# exists before counting starts.
WARM_UP = 20


def per_request(argv, port, env, scenarios, name, workdir):
    """(instructions, allocations) per request: (count with N requests of
    scenario `name` − count with 0) / N. Every
    run does the same set-up (a first, cold request and warm-up requests on
    one connection per scenario, with its own set-up such as an IMDS session
    token); the 0-request run then idles for as long as the N-request run
    took, so timers and periodic upkeep cancel out too."""
    took = {}

    def exercise(port, interval, n):
        connections = {}
        for scenario, (setup, method, path, headers) in scenarios.items():
            connection = KeepAlive(port)
            headers = setup(connection) if setup else headers
            for _ in range(1 + WARM_UP):
                status, _ = connection.request(method, path, headers)
                assert status == 200, f"{scenario}: {status}"
            connections[scenario] = (connection, method, path, headers)
        with interval:
            started = time.monotonic()
            if n:
                connection, method, path, headers = connections[name]
                for _ in range(n):
                    status, _ = connection.request(method, path, headers)
                    assert status == 200, f"{name}: {status}"
                took["seconds"] = time.monotonic() - started
            else:
                time.sleep(took["seconds"])
        for connection, *_ in connections.values():
            connection.close()

    counts = {}
    for n in (REQUESTS, 0):
        out = os.path.join(workdir, f"callgrind.{name}.{n}".replace(" ", "_").replace("/", "_"))
        counts[n] = run(argv, port, env, lambda port, interval: exercise(port, interval, n), out)
        if KEEP:
            os.makedirs(KEEP, exist_ok=True)
            shutil.copy(out + ".1", os.path.join(KEEP, os.path.basename(out)))
    return tuple((counts[REQUESTS][i] - counts[0][i]) / REQUESTS for i in (0, 1))


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;  # nginx closes after 1,000 by default; hyper never does
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /role/dev {{
            if ($http_authorization != "{token}") {{ return 403; }}
            default_type application/json;
            alias {body};
        }}
    }}
}}
"""


def nginx_argv(workdir, port, token, body):
    body_file = os.path.join(workdir, "nginx-body.json")
    with open(body_file, "wb") as f:
        f.write(body)
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, port=port, token=token, body=body_file))
    return ["nginx", "-p", workdir, "-c", conf]


@contextmanager
def native_nginx(workdir, token, body):
    """nginx with the bench's config, not under valgrind (for wrk)."""
    nginx_dir = nginx_prefix(workdir)
    port = free_port()
    process = subprocess.Popen(nginx_argv(nginx_dir, port, token, body),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def nginx_prefix(workdir):
    nginx_dir = tempfile.mkdtemp(dir=workdir)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(nginx_dir, sub))
    return nginx_dir


def measure(daemon_argv, daemon_env, daemon_port, token, body, workdir):
    """Rows for the Markdown table: per-request instructions for three
    credential requests and nginx, the ratios, and allocations per request."""
    imds_token = {}

    def imds_setup(connection):
        status, session = connection.request("PUT", "/latest/api/token",
                                             {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        assert status == 200, status
        imds_token["value"] = session.decode()
        return {"X-aws-ec2-metadata-token": imds_token["value"]}

    auth = {"Authorization": token}
    scenarios = {
        "GET /role/dev": (None, "GET", "/role/dev", auth),
        "GET /creds": (None, "GET", "/creds", auth),
        "IMDS credentials GET": (imds_setup, "GET", "/latest/meta-data/iam/security-credentials/dev", None),
    }
    nginx_dir = nginx_prefix(workdir)
    nginx_port = free_port()
    nginx = nginx_argv(nginx_dir, nginx_port, token, body)
    nginx_scenarios = {"nginx GET /role/dev": scenarios["GET /role/dev"]}

    rows = []
    limit, limit_allocations = per_request(nginx, nginx_port, None, nginx_scenarios, "nginx GET /role/dev", workdir)
    rows.append(("instructions per warm request: nginx 1.22, same body and token check", f"{limit:,.0f}", ""))
    allocations = {}
    for name, target in (("GET /role/dev", 1.2), ("GET /creds", 1.3), ("IMDS credentials GET", 1.3)):
        ours, allocations[name] = per_request(daemon_argv, daemon_port, daemon_env, scenarios, name, workdir)
        ratio = ours / limit
        rows.append((f"instructions per warm request: {name}", f"{ours:,.0f} ({ratio:.2f}× nginx)",
                     f"≤ {target}× {'✓' if ratio <= target else '✗'}"))
    for name, count in allocations.items():
        # Timer-driven work inside the interval adds a few hundredths.
        rows.append((f"heap allocations per warm request: {name}", f"{count:.2f}",
                     f"≤ 4 {'✓' if round(count, 1) <= 4 else '✗'}"))
    rows.append(("heap allocations per warm request: nginx (malloc calls; nginx also uses its pools)",
                 f"{limit_allocations:.2f}", ""))
    return rows
