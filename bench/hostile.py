#!/usr/bin/env python3
"""Hostile and careless peers against one `fencegate` binary: what each costs the server (issue 12).

Usage (as root, from anywhere; python3 standard library only, plus curl-free raw sockets and wrk):

    bench/hostile.py                                    # every scenario, against .build/release/fencegate
    bench/hostile.py --fencegate /work/before/.build/release/fencegate --json /tmp/hostile-before/hostile.json
    bench/hostile.py --scenario audit-bytes --scenario tcp-listener     # some of them only

Scenarios (each starts its own `fencegate serve` with its own temporary database directory, on 127.0.0.1
only, and stops only the processes it started, by PID, even on failure):

  memory           wrk, 16 connections, 30 s on GET /domains/test (read token), then 30 s on GET /healthz,
                   then a 65 s idle pause; RSS at start, after each load and after the pause (test:///default,
                   default --operation-timeout).
  memory-controls  the same 2 × 30 s on GET /metrics (read token) and on a 404 (GET /no-such-route), on a
                   server of its own: requests that the issue reports do not grow memory.
  audit-bytes      600 × POST /domains/<target>/off without credentials, where <target> is 256 characters, each
                   a letter followed by as many U+0301 as libmicrohttpd still accepts in the request line
                   (probed on a server of its own), percent-encoded UTF-8; the same with the UTF-8 sent raw
                   (extra variant); and a control with the short target `test`. Audit database growth (db + -wal).
  hung-hypervisor  a Unix socket that accepts and never answers, as the libvirt URI
                   test+unix:///default?socket=PATH; serve --operation-timeout 2; 1,200 GET /healthz, 32 at
                   once, each with a client timeout; threads and fds after, and after a 10 s pause; connections
                   that reached the fake socket.
  tcp-listener     serve --tcp-listen 127.0.0.1:PORT --key-file KEY; 900 idle TCP connections held; then a
                   slow-drip client (1 byte every 5 s, up to 245 bytes; capped at 120 s); then all closed and
                   threads and fds 15 s later.

For each checkpoint: the server's threads (/proc/PID/status), open fds (/proc/PID/fd), RSS (VmRSS) and the
audit database's bytes (db + -wal). The output is a Markdown table on stdout and, with --json, every figure.
Figures depend on the machine's load: nproc and the load average are recorded with them.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FENCEGATE = os.path.join(ROOT, ".build/release/fencegate")
SCENARIOS = ["memory", "memory-controls", "audit-bytes", "hung-hypervisor", "tcp-listener"]
ORIGINAL_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------------------------------------------------
# Measuring a process

def loadavg():
    with open("/proc/loadavg") as file:
        return [float(value) for value in file.read().split()[:3]]


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def file_bytes(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def restore_limits():
    """Runs in the child before exec: the server gets the file limit this script was started with."""
    resource.setrlimit(resource.RLIMIT_NOFILE, ORIGINAL_NOFILE)


def terminate(process, grace):
    """SIGTERM, then SIGKILL after `grace` seconds, for a process this script started. Returns how it ended."""
    if process is None or process.poll() is not None:
        return "already exited" if process is not None else "not started"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
        return f"SIGTERM (exit {process.returncode})"
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"SIGKILL after {grace:.0f} s (SIGTERM did not end it)"


class Server:
    """One `fencegate serve` with a temporary directory and database of its own."""

    def __init__(self, binary, workdir, name):
        self.binary = binary
        self.name = name
        self.directory = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
        self.database = os.path.join(self.directory, "audit.db")
        self.env = dict(os.environ, FENCEGATE_DATABASE=self.database)
        self.env.pop("FENCEGATE_URI", None)
        self.process = None
        self.lines = []
        self.ready = threading.Event()
        self.port = None
        self.tcp_port = None
        self.checkpoints = []
        self.stopped = None

    def run(self, *arguments, check=True):
        return subprocess.run([self.binary, *arguments, "--database", self.database], env=self.env,
                              capture_output=True, text=True, check=check)

    def token(self, name, scope):
        return self.run("token", "create", name, "--scope", scope).stdout.strip()

    def start(self, *arguments, startup_limit=90):
        self.log_path = os.path.join(self.directory, "serve.log")
        log = open(self.log_path, "w")
        self.command = [self.binary, "serve", "--database", self.database, "--listen", "127.0.0.1:0",
                        "--log-level", "warning", *arguments]
        self.process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.PIPE, stderr=log,
                                        stdin=subprocess.DEVNULL, text=True, preexec_fn=restore_limits)
        log.close()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        began = time.monotonic()
        if not self.ready.wait(startup_limit) or self.port is None:
            raise RuntimeError(f"{self.name}: fencegate serve did not print its address within {startup_limit} s "
                               f"(stdout {self.lines!r}; log {self.log_path})")
        self.startup_seconds = time.monotonic() - began
        return self

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.ready.is_set():
                match = re.search(r"https?://127\.0\.0\.1:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    tcp = re.search(r"fence_virt on tcp [^;,\s]*:(\d+)", line)
                    self.tcp_port = int(tcp.group(1)) if tcp else None
                    self.ready.set()
        self.ready.set()

    @property
    def pid(self):
        return self.process.pid

    def limits(self):
        try:
            with open(f"/proc/{self.pid}/limits") as file:
                for line in file:
                    if line.startswith("Max open files"):
                        return " ".join(line.split()[3:5])
        except OSError:
            pass
        return "?"

    def stats(self, label):
        """A checkpoint: threads, fds, RSS of the server, and the audit database's bytes on disk."""
        alive = self.process is not None and self.process.poll() is None
        entry = {"label": label, "time": round(time.monotonic(), 2), "loadavg": loadavg(), "alive": alive,
                 "threads": None, "fds": None, "rss_kib": None,
                 "db_bytes": file_bytes(self.database), "wal_bytes": file_bytes(self.database + "-wal"),
                 "shm_bytes": file_bytes(self.database + "-shm")}
        if alive:
            try:
                entry["threads"] = proc_status(self.pid, "Threads")
                entry["rss_kib"] = proc_status(self.pid, "VmRSS")
                entry["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                entry["alive"] = False
        entry["audit_bytes"] = entry["db_bytes"] + entry["wal_bytes"]
        self.checkpoints.append(entry)
        print(f"    [{self.name}] {label}: threads {entry['threads']}, fds {entry['fds']}, "
              f"RSS {mib(entry['rss_kib'])} MiB, audit db+wal {entry['audit_bytes']:,} B, load {entry['loadavg'][0]:.2f}",
              flush=True)
        return entry

    def audit_query(self, sql):
        """One value from the audit database (read-only, beside the running server), or why it is unreadable."""
        try:
            connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
            try:
                return connection.execute(sql).fetchone()[0]
            finally:
                connection.close()
        except sqlite3.Error as error:
            return f"unreadable: {error}"

    def audit_rows(self):
        """Rows in the operations table."""
        return self.audit_query("SELECT count(*) FROM operations")

    def target_bytes(self):
        """Bytes of the `target` column over all rows (what the requests themselves put in the log)."""
        return self.audit_query("SELECT coalesce(sum(length(CAST(target AS BLOB))), 0) FROM operations")

    def stop(self, grace=30):
        self.stopped = terminate(self.process, grace)
        return self.stopped

    def log_tail(self, lines=8):
        try:
            with open(self.log_path) as file:
                return file.read().splitlines()[-lines:]
        except (OSError, AttributeError):
            return []


class Peaks:
    """Samples a server's threads, fds and RSS every 0.2 s in the background; keeps the highest of each."""

    def __init__(self, server):
        self.server = server
        self.peak = {"threads": 0, "fds": 0, "rss_kib": 0}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        pid = self.server.pid
        while not self.stopping.is_set():
            try:
                self.peak["threads"] = max(self.peak["threads"], proc_status(pid, "Threads") or 0)
                self.peak["rss_kib"] = max(self.peak["rss_kib"], proc_status(pid, "VmRSS") or 0)
                self.peak["fds"] = max(self.peak["fds"], len(os.listdir(f"/proc/{pid}/fd")))
            except OSError:
                pass
            self.stopping.wait(0.2)

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        return dict(self.peak)


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f}"


# ---------------------------------------------------------------------------------------------------------
# Clients

def http_status(port, method, target, headers=(), timeout=10.0):
    """One HTTP/1.1 request on its own connection (`target` is the request-target as bytes, sent as is).
    Returns the status code, or a short error name (timeout, reset, closed)."""
    request = (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               + b"".join(header.encode() + b"\r\n" for header in headers)
               + (b"Content-Length: 0\r\n" if method == "POST" else b"") + b"\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(request)
            data = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
            if match:
                return int(match.group(1))
            return "closed without an answer" if not data else "unparsable answer"
    except socket.timeout:
        return "client timeout"
    except ConnectionResetError:
        return "reset"
    except OSError as error:
        return f"error {error.errno}"


def run_requests(count, concurrency, make):
    """Runs `make()` `count` times, `concurrency` at once; returns ({status: n}, seconds)."""
    results = {}
    lock = threading.Lock()
    began = time.monotonic()

    def one(_):
        status = make()
        with lock:
            results[str(status)] = results.get(str(status), 0) + 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(count)))
    return dict(sorted(results.items())), time.monotonic() - began


def ensure_wrk():
    if shutil.which("wrk"):
        return shutil.which("wrk")
    print("  installing wrk (Debian package)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def parse_wrk(output):
    def number(pattern, default=0.0):
        match = re.search(pattern, output)
        return float(match.group(1)) if match else default
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {"requests": int(number(r"(\d+) requests in")), "requests_per_second": number(r"Requests/sec:\s+([\d.]+)"),
            "non_2xx_3xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
            "socket_errors": socket_errors.group(1).strip() if socket_errors else ""}


def wrk_load(server, path, seconds, connections=16, token=None, processes=None):
    """wrk on `path` for `seconds` with `connections`; samples the server's RSS meanwhile (peak)."""
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    command.append(f"http://127.0.0.1:{server.port}{path}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if processes is not None:
        processes.append(process)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, proc_status(server.pid, "VmRSS") or 0)
        except OSError:
            pass
        time.sleep(0.5)
    out, err = process.communicate()
    result = parse_wrk(out)
    result["command"] = " ".join(command).replace(token, "$TOKEN") if token else " ".join(command)
    result["peak_rss_kib"] = peak
    if process.returncode != 0:
        result["error"] = err.strip()
    print(f"    wrk {path}: {result['requests']:,} requests ({result['requests_per_second']:,.0f}/s), "
          f"non-2xx {result['non_2xx_3xx']}, peak RSS {mib(peak)} MiB", flush=True)
    return result


# ---------------------------------------------------------------------------------------------------------
# Scenarios. Each returns a dict; its servers' checkpoints are stored in it.

def wrk_series(options, workdir, started, name, paths):
    """Starts a server on test:///default and loads each of `paths` (label, path, with token) for
    --load-seconds with wrk, one after the other, taking the server's figures after each."""
    ensure_wrk()
    server = Server(options.fencegate, workdir, name)
    started.append(server)
    token = server.token("hostile-read", "read")
    server.start("--uri", "test:///default")
    time.sleep(2)
    server.stats("start")
    loads = {}
    for label, path, with_token in paths:
        loads[label] = wrk_load(server, path, options.load_seconds, token=token if with_token else None)
        server.stats(f"after {options.load_seconds} s {label}")
    return server, loads


def load_answers(loads):
    return "; ".join(f"{path}: {load['requests']:,} requests, {load['non_2xx_3xx']} non-2xx"
                     + (f", socket errors {load['socket_errors']}" if load["socket_errors"] else "")
                     for path, load in loads.items())


def scenario_memory(options, workdir, started):
    server, loads = wrk_series(options, workdir, started, "memory",
                               [("GET /domains/test", "/domains/test", True), ("GET /healthz", "/healthz", False)])
    time.sleep(options.idle_pause)
    server.stats(f"after {options.idle_pause} s idle")
    total = sum(load["requests"] for load in loads.values())
    return {"tried": f"wrk 16 connections: {options.load_seconds} s GET /domains/test (read token), then "
                     f"{options.load_seconds} s GET /healthz, then {options.idle_pause} s idle (test:///default, "
                     f"default --operation-timeout)",
            "answers": load_answers(loads), "requests": total, "loads": loads, "servers": [server]}


def scenario_memory_controls(options, workdir, started):
    server, loads = wrk_series(options, workdir, started, "memory-controls",
                               [("GET /metrics", "/metrics", True),
                                ("GET /no-such-route (404)", "/no-such-route", True)])
    return {"tried": f"wrk 16 connections: {options.load_seconds} s GET /metrics (read token), then "
                     f"{options.load_seconds} s GET /no-such-route (404)",
            "answers": load_answers(loads), "loads": loads, "servers": [server]}


def big_target(marks, raw):
    """256 characters, each a letter followed by `marks` U+0301 (one grapheme cluster each); the path segment
    as sent: percent-encoded UTF-8, or the UTF-8 bytes as they are."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    mark = b"\xcc\x81" if raw else b"%CC%81"
    return b"".join(letters[index % 26].encode() + mark * marks for index in range(256))


def probe_largest(port, raw, upper=400):
    """The largest number of marks per character for which libmicrohttpd still hands the request to the
    service (any answer but 414 / 431 / 413 or a dropped connection). Binary search; one request per probe."""
    trail = []

    def accepted(marks):
        status = http_status(port, "POST", b"/domains/" + big_target(marks, raw) + b"/off")
        trail.append({"marks": marks, "url_bytes": len(big_target(marks, raw)) + 13, "status": status})
        return isinstance(status, int) and status not in (413, 414, 431)

    low, high = 0, upper
    if not accepted(low):
        return None, trail
    while low < high:
        middle = (low + high + 1) // 2
        if accepted(middle):
            low = middle
        else:
            high = middle - 1
    return low, trail


def scenario_audit_bytes(options, workdir, started):
    count, concurrency = options.audit_requests, 8
    probe = Server(options.fencegate, workdir, "audit-probe")
    started.append(probe)
    probe.start("--uri", "test:///default")
    largest = {}
    trails = {}
    for raw in (False, True):
        name = "raw" if raw else "percent"
        largest[name], trails[name] = probe_largest(probe.port, raw)
        print(f"    probe ({name}-encoded UTF-8): at most {largest[name]} U+0301 per character "
              f"({len(big_target(largest[name] or 0, raw)):,}-byte path segment)", flush=True)
    probe.stop()

    variants = [("control", b"test", "the short target `test`")]
    for name in ("percent", "raw"):
        if largest[name] is not None:
            segment = big_target(largest[name], name == "raw")
            decoded = len(urllib.parse.unquote_to_bytes(segment))
            variants.append((f"large-{name}", segment,
                             f"256 characters, each a letter + {largest[name]} U+0301 ({'percent-encoded' if name == 'percent' else 'raw'}"
                             f" UTF-8: {len(segment):,} bytes in the URL, {decoded:,} bytes decoded)"))
    runs = {}
    servers = [probe]
    for name, segment, description in variants:
        server = Server(options.fencegate, workdir, f"audit-{name}")
        started.append(server)
        servers.append(server)
        server.start("--uri", "test:///default")
        time.sleep(1)
        rows_before = server.audit_rows()
        before = server.stats(f"{name}: before")
        target = b"/domains/" + segment + b"/off"
        statuses, seconds = run_requests(count, concurrency, lambda: http_status(server.port, "POST", target))
        time.sleep(1)
        after = server.stats(f"{name}: after {count} requests")
        rows_after = server.audit_rows()
        stored = server.target_bytes()
        grown = after["audit_bytes"] - before["audit_bytes"]
        # After a clean stop, what stays on disk (SQLite may have checkpointed the WAL into the database).
        server.stop()
        closed = server.stats(f"{name}: after the server stopped")
        runs[name] = {"description": description, "url_bytes": len(target), "statuses": statuses,
                      "seconds": round(seconds, 1), "audit_bytes_grown": grown,
                      "db_bytes_grown_after_stop": closed["audit_bytes"] - before["audit_bytes"],
                      "db_file_grown": after["db_bytes"] - before["db_bytes"], "wal_bytes_after": after["wal_bytes"],
                      "rows_before": rows_before, "rows_after": rows_after, "target_bytes_stored": stored,
                      "bytes_per_request": round(grown / count)}
        print(f"    {name}: statuses {statuses}, audit db+wal +{grown:,} B ({grown / 2**20:.1f} MiB) while running "
              f"(database file +{runs[name]['db_file_grown']:,} B, WAL {after['wal_bytes']:,} B), "
              f"+{runs[name]['db_bytes_grown_after_stop']:,} B after the stop; rows {rows_before} → {rows_after}; "
              f"target bytes stored {stored}", flush=True)
    return {"tried": f"{count} × POST /domains/<target>/off without credentials, {concurrency} at once, per target: "
                     + "; ".join(f"{name}: {run['description']}" for name, run in runs.items()),
            "answers": "; ".join(f"{name}: {run['statuses']}, db+wal +{run['audit_bytes_grown']:,} B "
                                 f"({run['audit_bytes_grown'] / 2**20:.1f} MiB, {run['bytes_per_request']:,} B/request; "
                                 f"database file alone +{run['db_file_grown']:,} B)"
                                 for name, run in runs.items()),
            "largest_marks": largest, "probe_trail": trails, "runs": runs, "servers": servers}


class HungLibvirtd:
    """A Unix socket that accepts every connection, reads what it is sent, and never answers."""

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o666)
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.accepted = 0
        self.closed_by_peer = 0
        self.bytes_received = 0
        self.connections = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            for key, _ in self.selector.select(0.2):
                if key.fileobj is self.listener:
                    try:
                        connection, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    connection.setblocking(False)
                    self.accepted += 1
                    self.connections.append(connection)
                    self.selector.register(connection, selectors.EVENT_READ)
                else:
                    try:
                        data = key.fileobj.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self.bytes_received += len(data)
                    else:
                        self.closed_by_peer += 1
                        self.selector.unregister(key.fileobj)
                        key.fileobj.close()

    @property
    def open(self):
        return self.accepted - self.closed_by_peer

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        for connection in self.connections:
            try:
                connection.close()
            except OSError:
                pass
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def scenario_hung_hypervisor(options, workdir, started):
    count, concurrency, client_timeout = options.healthz_requests, 32, options.client_timeout
    server = Server(options.fencegate, workdir, "hung-hypervisor")
    fake = HungLibvirtd(os.path.join(server.directory, "libvirt-sock"))
    started.append(server)
    started.append(fake)
    uri = f"test+unix:///default?socket={fake.path}"
    server.start("--uri", uri, "--operation-timeout", "2")
    time.sleep(1)
    server.stats("start")
    accepted_at_start = fake.accepted
    peaks = Peaks(server)
    statuses, seconds = run_requests(count, concurrency,
                                     lambda: http_status(server.port, "GET", b"/healthz", timeout=client_timeout))
    server.stats(f"after {count} × GET /healthz")
    request_peaks = peaks.stop()
    accepted_after = fake.accepted
    time.sleep(options.hung_pause)
    server.stats(f"after {options.hung_pause} s pause")
    result = {"tried": f"libvirt URI {uri.replace(fake.path, 'PATH')} on a socket that accepts and never answers; "
                       f"serve --operation-timeout 2; {count} × GET /healthz, {concurrency} at once, client timeout "
                       f"{client_timeout:.0f} s",
              "answers": f"{statuses} in {seconds:.0f} s; the fake libvirtd accepted {accepted_at_start} connections "
                         f"before the requests, {accepted_after} after them, {fake.accepted} after the pause "
                         f"({fake.open} still open)",
              "statuses": statuses, "seconds": round(seconds, 1), "uri": uri, "peak_during_requests": request_peaks,
              "fake_socket": {"accepted_at_start": accepted_at_start, "accepted_after_requests": accepted_after,
                              "accepted_after_pause": fake.accepted, "open_after_pause": fake.open,
                              "closed_by_server": fake.closed_by_peer, "bytes_received": fake.bytes_received},
              "startup_seconds": round(server.startup_seconds, 2), "servers": [server]}
    print(f"    statuses {statuses}; fake libvirtd: {fake.accepted} connections accepted, {fake.open} still open",
          flush=True)
    result["stopped"] = server.stop(grace=30)
    print(f"    server stopped by {result['stopped']}", flush=True)
    return result


def scenario_tcp_listener(options, workdir, started):
    wanted = options.idle_connections
    soft, hard = ORIGINAL_NOFILE
    need = wanted + 256
    if soft != resource.RLIM_INFINITY and soft < need:  # our own limit only; the server keeps ORIGINAL_NOFILE
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))
    server = Server(options.fencegate, workdir, "tcp-listener")
    started.append(server)
    key = os.path.join(server.directory, "fence_xvm.key")
    subprocess.run([options.fencegate, "keygen", key], check=True, capture_output=True)
    server.start("--uri", "test:///default", "--tcp-listen", "127.0.0.1:0", "--key-file", key)
    if server.tcp_port is None:
        raise RuntimeError(f"the server did not print its fence_virt tcp address: {server.lines}")
    time.sleep(1)
    server.stats("start")
    held, failures, retries = [], {}, 0
    peaks = Peaks(server)
    began = time.monotonic()
    # Each connect attempt waits at most 0.1 s and is then made again: the listener's accept queue is short,
    # and a SYN dropped while it is full would otherwise be retried by the kernel only after 1 s, so that the
    # first connections would reach the server's idle timeout before the last ones were opened.
    for _ in range(wanted):
        for attempt in range(100):
            try:
                connection = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=0.1)
                held.append(connection)
                break
            except socket.timeout:
                retries += 1
                continue
            except OSError as error:
                reason = error.strerror or str(error)
                failures[reason] = failures.get(reason, 0) + 1
                break
        else:
            failures["no connection in 100 attempts of 0.1 s"] = failures.get("no connection in 100 attempts of 0.1 s", 0) + 1
    opened_seconds = time.monotonic() - began
    started.append(held)

    seen_closed = set()
    timeline = {"first_closed_after": None, "all_closed_after": None}

    def closed_by_server():
        """How many of the held connections the server has closed (a read sees the end, or an error)."""
        for index, connection in enumerate(held):
            if index in seen_closed:
                continue
            try:
                connection.setblocking(False)
                if connection.recv(1) == b"":
                    seen_closed.add(index)
            except BlockingIOError:
                pass
            except OSError:
                seen_closed.add(index)
        since = round(time.monotonic() - (began + opened_seconds), 1)
        if seen_closed and timeline["first_closed_after"] is None:
            timeline["first_closed_after"] = since
        if held and len(seen_closed) == len(held) and timeline["all_closed_after"] is None:
            timeline["all_closed_after"] = since
        return len(seen_closed)

    time.sleep(options.hold_settle)
    server.stats(f"{len(held)} idle connections held ({options.hold_settle:g} s after the last)")
    closed_at_hold = closed_by_server()
    opening_peaks = peaks.stop()
    print(f"    opened {len(held)} of {wanted} in {opened_seconds:.1f} s ({retries} connect attempts retried, failures "
          f"{failures}); {closed_at_hold} already closed by the server; peak while opening and holding: threads "
          f"{opening_peaks['threads']}, fds {opening_peaks['fds']}", flush=True)

    # The slow drip: one byte every `drip_interval` seconds, up to `drip_bytes`, while the others are held. From
    # another loopback address (127.0.0.2), so that a limit per address, which the idle ones exhaust, does not
    # turn it away before it starts: what is measured is how long one slow client is kept.
    drip = {"interval_seconds": options.drip_interval, "bytes_planned": options.drip_bytes, "cap_seconds": options.drip_cap}
    try:
        connection = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5, source_address=("127.0.0.2", 0))
    except OSError as error:
        connection = None
        drip.update({"bytes_sent": 0, "open_seconds": 0, "ended": f"connect failed ({error})", "shown": "not connected"})
    drip_began = time.monotonic()
    last_check = drip_began
    sent, open_until, how = 0, None, None
    selector = selectors.DefaultSelector()
    if connection is not None:
        selector.register(connection, selectors.EVENT_READ)
    next_byte = drip_began
    try:
        while connection is not None:
            now = time.monotonic()
            if now - last_check >= 1:  # meanwhile: when does the server close the idle ones?
                closed_by_server()
                last_check = now
            if now - drip_began >= options.drip_cap:
                how = "still open at the cap"
                break
            if now >= next_byte and sent < options.drip_bytes:
                try:
                    connection.send(b"\x00")
                    sent += 1
                except OSError as error:
                    open_until, how = now - drip_began, f"send failed ({error.strerror})"
                    break
                next_byte += options.drip_interval
            wait = min(max(0.0, next_byte - time.monotonic()), options.drip_cap - (time.monotonic() - drip_began), 1.0)
            if selector.select(max(wait, 0.01)):
                try:
                    data = connection.recv(4096)
                except OSError as error:
                    data = None
                    open_until, how = time.monotonic() - drip_began, f"reset ({error.strerror})"
                    break
                if not data:
                    open_until, how = time.monotonic() - drip_began, "closed by the server"
                    break
    finally:
        selector.close()
        if connection is not None:
            connection.close()
    if connection is not None:
        drip.update({"bytes_sent": sent, "open_seconds": None if open_until is None else round(open_until, 1),
                     "ended": how,
                     "shown": f"≥{options.drip_cap:.0f} s" if open_until is None else f"{open_until:.1f} s"})
    closed_after_drip = closed_by_server()
    during = server.stats("after the drip (idle ones still held)")
    print(f"    drip: {drip['shown']} ({drip['ended']}), {drip['bytes_sent']} bytes sent; {closed_after_drip} of the idle "
          f"connections closed by the server by then (first after {timeline['first_closed_after']} s, all after "
          f"{timeline['all_closed_after']} s)", flush=True)

    for connection in held:
        connection.close()
    held.clear()
    time.sleep(options.tcp_pause)
    server.stats(f"all closed, {options.tcp_pause:.0f} s later")
    return {"tried": f"{wanted} idle TCP connections to fence_virt's listener (serve --tcp-listen 127.0.0.1:PORT "
                     f"--key-file KEY), held; meanwhile one client sending 1 byte every {options.drip_interval:.0f} s "
                     f"(up to {options.drip_bytes} bytes; a request is 176), measured up to {options.drip_cap:.0f} s; "
                     f"then all closed",
            "answers": f"{wanted - sum(failures.values())} connected in {opened_seconds:.1f} s (failures {failures or 0}); "
                       f"peak while opening and holding: {opening_peaks['threads']} threads, {opening_peaks['fds']} fds; "
                       f"closed by the server: {closed_at_hold} when measured held, {closed_after_drip} after the drip "
                       f"(first after {timeline['first_closed_after']} s, all after {timeline['all_closed_after']} s); "
                       f"slow drip kept open {drip['shown']} ({drip['ended']}, {drip['bytes_sent']} bytes sent)",
            "connected": wanted - sum(failures.values()), "connect_failures": failures, "connect_retries": retries,
            "peak_while_opening_and_holding": opening_peaks,
            "connect_seconds": round(opened_seconds, 1), "closed_by_server_at_hold": closed_at_hold,
            "closed_by_server_after_drip": closed_after_drip, "idle_closed": timeline, "drip": drip, "server_open_files_limit": server.limits(),
            "servers": [server]}


RUNNERS = {"memory": scenario_memory, "memory-controls": scenario_memory_controls,
           "audit-bytes": scenario_audit_bytes, "hung-hypervisor": scenario_hung_hypervisor,
           "tcp-listener": scenario_tcp_listener}


# ---------------------------------------------------------------------------------------------------------
# Output

def series(checkpoints, key, render):
    values = ["–" if point.get(key) is None else render(point.get(key)) for point in checkpoints]
    return " → ".join(values) if values else "–"


def render_markdown(results):
    machine = results["machine"]
    lines = [
        f"Fencegate under hostile peers: `{results['fencegate']}` ({results['fencegate_commit']}), "
        f"{results['date']}, {machine['nproc']} cores, load average at start {' / '.join(f'{v:.2f}' for v in machine['loadavg_start'])}"
        f" (end {' / '.join(f'{v:.2f}' for v in machine['loadavg_end'])}), Linux {machine['kernel']}.",
        "",
        "| scenario | tried | answers | threads | fds | RSS MiB | audit db+wal bytes | 1-min load at start |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for name, result in results["scenarios"].items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error']} | | | | | | |")
            continue
        for server in result["servers"]:
            points = server["checkpoints"]
            if not points:
                continue
            if name == "audit-bytes" and server["name"] == "audit-probe":
                continue
            label = name if len(result["servers"]) == 1 else f"{name} ({server['name']})"
            tried = result["tried"] if server is result["servers"][-1] or len(result["servers"]) == 1 else ""
            answers = result["answers"] if server is result["servers"][-1] or len(result["servers"]) == 1 else ""
            if name == "audit-bytes":
                run = result["runs"].get(server["name"].removeprefix("audit-"), {})
                tried = run.get("description", "")
                answers = (f"{run.get('statuses')}; db+wal +{run.get('audit_bytes_grown', 0):,} B "
                           f"(database file +{run.get('db_file_grown', 0):,} B, WAL {run.get('wal_bytes_after', 0):,} B);"
                           f" {run.get('target_bytes_stored')} bytes of targets stored")
            lines.append(
                f"| {label} | {tried} | {answers} | {series(points, 'threads', str)} | {series(points, 'fds', str)} "
                f"| {series(points, 'rss_kib', mib)} | {series(points, 'audit_bytes', lambda v: f'{v:,}')} "
                f"| {points[0]['loadavg'][0]:.2f} |")
    lines += ["", "Checkpoints (in order, → separated) per scenario:", ""]
    for name, result in results["scenarios"].items():
        for server in result.get("servers", []):
            labels = ", ".join(point["label"] for point in server["checkpoints"])
            if labels:
                lines.append(f"- {server['name']}: {labels}")
    return "\n".join(lines)


def commit_of(binary):
    directory = os.path.dirname(os.path.abspath(binary))
    result = subprocess.run(["git", "-C", directory, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if result.returncode != 0:
        return "commit unknown"
    dirty = subprocess.run(["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return result.stdout.strip() + (" with uncommitted changes" if dirty else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fencegate", default=DEFAULT_FENCEGATE, help="the fencegate binary (default: %(default)s)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this one (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (databases, logs)")
    parser.add_argument("--load-seconds", type=int, default=30, help="memory: seconds of each wrk load")
    parser.add_argument("--idle-pause", type=int, default=65, help="memory: idle seconds before the last checkpoint")
    parser.add_argument("--audit-requests", type=int, default=600, help="audit-bytes: requests per target")
    parser.add_argument("--healthz-requests", type=int, default=1200, help="hung-hypervisor: GET /healthz sent")
    parser.add_argument("--client-timeout", type=float, default=10.0, help="hung-hypervisor: seconds per request")
    parser.add_argument("--hung-pause", type=float, default=10.0, help="hung-hypervisor: pause before the last checkpoint")
    parser.add_argument("--idle-connections", type=int, default=900, help="tcp-listener: idle connections held")
    parser.add_argument("--hold-settle", type=float, default=1.0,
                        help="tcp-listener: seconds after the last connect before measuring them held")
    parser.add_argument("--drip-interval", type=float, default=5.0, help="tcp-listener: seconds between drip bytes")
    parser.add_argument("--drip-bytes", type=int, default=245, help="tcp-listener: most bytes the drip sends")
    parser.add_argument("--drip-cap", type=float, default=120.0, help="tcp-listener: longest drip measured, seconds")
    parser.add_argument("--tcp-pause", type=float, default=15.0, help="tcp-listener: seconds after closing all")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/hostile.py runs as root (it reads /proc of the server, installs wrk if missing)")
    options.fencegate = os.path.abspath(options.fencegate)
    if not os.access(options.fencegate, os.X_OK):
        sys.exit(f"no fencegate binary at {options.fencegate} (swift build -c release, or --fencegate PATH)")

    workdir = tempfile.mkdtemp(prefix="fencegate-hostile-")
    results = {"tool": "bench/hostile.py", "command": " ".join([sys.argv[0]] + sys.argv[1:]),
               "fencegate": options.fencegate, "fencegate_commit": commit_of(options.fencegate),
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": {"nproc": os.cpu_count(), "loadavg_start": loadavg(), "kernel": platform.release(),
                           "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                           "open_files_limit_of_this_script": list(ORIGINAL_NOFILE)},
               "workdir": workdir, "scenarios": {}}
    print(f"fencegate {options.fencegate} ({results['fencegate_commit']}); {os.cpu_count()} cores, "
          f"load average {results['machine']['loadavg_start']}", flush=True)
    try:
        for name in options.scenario or SCENARIOS:
            print(f"{name}:", flush=True)
            started = []
            began = time.monotonic()
            load_start = loadavg()
            try:
                result = RUNNERS[name](options, workdir, started)
            except Exception as error:  # one failed scenario must not lose the others' figures
                result = {"error": f"{type(error).__name__}: {error}",
                          "servers": [item for item in started if isinstance(item, Server)]}
                print(f"    FAILED: {result['error']}", flush=True)
            finally:
                for item in reversed(started):
                    if isinstance(item, Server):
                        if item.stopped is None:
                            item.stop()
                    elif isinstance(item, HungLibvirtd):
                        item.stop()
                    elif isinstance(item, list):
                        for connection in item:
                            connection.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, ORIGINAL_NOFILE)
            result["seconds"] = round(time.monotonic() - began, 1)
            result["loadavg_start"] = load_start
            result["loadavg_end"] = loadavg()
            result["servers"] = [{"name": server.name, "command": server.command if server.process else None,
                                  "checkpoints": server.checkpoints, "stopped": server.stopped,
                                  "log_tail": server.log_tail()} for server in result["servers"]]
            results["scenarios"][name] = result
    finally:
        results["machine"]["loadavg_end"] = loadavg()
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    markdown = render_markdown(results)
    results["markdown"] = markdown
    print()
    print(markdown)
    if options.json:
        os.makedirs(os.path.dirname(os.path.abspath(options.json)), exist_ok=True)
        with open(options.json, "w") as file:
            json.dump(results, file, indent=2, default=str)
        print(f"\nwrote {options.json}")


if __name__ == "__main__":
    main()
