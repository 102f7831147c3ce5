#!/usr/bin/env python3
"""Fencegate benchmarks, side by side with fence_virtd in the same run and lab. Started by bench/run.

Everything runs on this machine: network namespaces this script creates (198.18.0.0/15), loopback, and
libvirt's test driver. It deletes its namespaces and stops the processes it started, by PID, even on failure.
"""
import argparse
import base64
import datetime
import grp
import json
import os
import platform
import pwd
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCEGATE = os.path.join(ROOT, ".build/release/fencegate")
BENCH_TOOL = os.path.join(ROOT, ".build/release/fencegate-bench")
FENCE_XVM = "/usr/sbin/fence_xvm"
FENCE_VIRTD = "/usr/sbin/fence_virtd"
IP = shutil.which("ip") or "/usr/sbin/ip"


def sh(*command, check=True, **kwargs):
    return subprocess.run(command, check=check, capture_output=True, text=True, **kwargs)


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(-(-len(ordered) * fraction // 1)) - 1))
    return ordered[index]


class Lab:
    """A host namespace with bridge br0 (198.18.0.1) and guests on veth ports (198.18.0.x / 198.18.1.x)."""

    def __init__(self, guests):
        tag = os.urandom(3).hex()
        self.host = f"fgb-{tag}-h"
        self.guests = [f"fgb-{tag}-g{index}" for index in range(1, guests + 1)]
        self.processes = []
        try:
            sh(IP, "netns", "add", self.host)
            sh(IP, "-n", self.host, "link", "set", "lo", "up")
            sh(IP, "-n", self.host, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            sh(IP, "-n", self.host, "addr", "add", "198.18.0.1/23", "dev", "br0")
            sh(IP, "-n", self.host, "link", "set", "br0", "up")
            for index, guest in enumerate(self.guests, start=1):
                address = self.address(index - 1) + "/23"
                sh(IP, "netns", "add", guest)
                sh(IP, "-n", guest, "link", "set", "lo", "up")
                sh(IP, "-n", self.host, "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0", "netns", guest)
                sh(IP, "-n", self.host, "link", "set", f"p{index}", "master", "br0")
                sh(IP, "-n", self.host, "link", "set", f"p{index}", "up")
                sh(IP, "-n", guest, "addr", "add", address, "dev", "eth0")
                sh(IP, "-n", guest, "link", "set", "eth0", "up")
        except BaseException:
            self.destroy()
            raise

    @staticmethod
    def address(guest_index):
        """The IPv4 address of guest `guest_index` (0-based)."""
        number = guest_index + 10
        return f"198.18.{number // 256}.{number % 256}"

    def start(self, namespace, command, log):
        process = subprocess.Popen([IP, "netns", "exec", namespace] + command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def stop(self, process, grace=5):
        terminate(process, grace)

    def destroy(self):
        for process in self.processes:
            if process.poll() is None:
                note_peak_rss(process)
                process.kill()
                process.wait()
        for namespace in self.guests + [self.host]:
            sh(IP, "netns", "del", namespace, check=False)


def terminate(process, grace=20):
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the end (a process this script started)."""
    if process.poll() is None:
        note_peak_rss(process)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fixture_uri(directory, domains, prefix="node", first=1):
    """A test-driver world with `domains` running domains named node1…nodeN (PREFIX1…, with UUIDs numbered from
    `first`: worlds of several hosts must not share a name or a UUID)."""
    path = os.path.join(directory, f"world-{prefix}-{domains}.xml")
    with open(path, "w") as file:
        file.write('<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>'
                   '<cores>2</cores><threads>1</threads><active>2</active></cpu><memory>16777216</memory>\n')
        for index in range(1, domains + 1):
            file.write(f'<domain type="test"><name>{prefix}{index}</name>'
                       f'<uuid>00000000-0000-4000-8000-{first + index - 1:012d}</uuid>'
                       f'<memory>262144</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n')
        file.write("</node>\n")
    return "test://" + path


def wait_for(predicate, limit=30, what="condition"):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def process_cpu_seconds(pid):
    """User + system CPU time of a running process."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid, field="VmRSS"):
    """The process's resident set (or another /proc/PID/status field in KiB, e.g. VmHWM: its peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# The highest peak RSS (VmHWM, KiB) of any `fencegate` process in each scenario of this run, read just before
# the benchmark stops it (terminate, Lab.destroy): every Fencegate the bench starts, in every scenario.
PEAK_RSS_KIB = {}
CURRENT_SCENARIO = ["none"]


def note_peak_rss(process):
    """Records the peak RSS of `process` under the current scenario if it is a running Fencegate."""
    try:
        if command_name(process.pid) == "fencegate":
            peak = rss_kib(process.pid, "VmHWM")
            scenario = CURRENT_SCENARIO[0]
            PEAK_RSS_KIB[scenario] = max(PEAK_RSS_KIB.get(scenario, 0), peak)
    except OSError:
        pass  # it ended meanwhile


# ---------------------------------------------------------------------------------------------------------
# 1. Concurrent guests running the unchanged fence_xvm

class Servers:
    """Starts fence_virtd or fencegate in the lab's host namespace (or `namespace`, listening on `interface`)
    on the same world and key; `client` is the guest namespace that checks they answer."""

    def __init__(self, lab, directory, uri, namespace=None, interface="br0", client=None):
        self.lab, self.directory, self.uri = lab, directory, uri
        self.namespace, self.interface = namespace or lab.host, interface
        self.client = client or lab.guests[0]
        self.key = os.path.join(directory, "fence_xvm.key")
        if not os.path.exists(self.key):
            sh(FENCEGATE, "keygen", self.key)

    def fence_virtd(self):
        config = os.path.join(self.directory, "fence_virt.conf")
        with open(config, "w") as file:
            file.write(f'fence_virtd {{ listener = "multicast"; backend = "libvirt"; }}\n'
                       f'listeners {{ multicast {{ key_file = "{self.key}"; address = "225.0.0.12"; interface = "{self.interface}"; }} }}\n'
                       f'backends {{ libvirt {{ uri = "{self.uri}"; }} }}\n')
        os.chmod(config, 0o600)
        log = open(os.path.join(self.directory, "fence_virtd.log"), "w")
        pidfile = os.path.join(self.directory, "fence_virtd.pid")
        process = self.lab.start(self.namespace, [FENCE_VIRTD, "-F", "-p", pidfile, "-f", config], log)
        self.wait_answering()
        return process

    def fencegate(self, extra=()):
        database = os.path.join(self.directory, f"audit-{os.urandom(3).hex()}.db")
        log = open(os.path.join(self.directory, "fencegate.log"), "w")
        process = self.lab.start(self.namespace, [
            FENCEGATE, "serve", "--uri", self.uri, "--database", database, "--listen", "127.0.0.1:0",
            "--multicast", "--multicast-interface", self.interface, "--key-file", self.key, "--log-level", "warning",
            *extra], log)
        self.wait_answering()
        return process

    def wait_answering(self):
        def answers():
            result = subprocess.run([IP, "netns", "exec", self.client, FENCE_XVM, "-k", self.key, "-o",
                                     "monitor", "-t", "1", "-r", "5"], capture_output=True)
            return result.returncode == 0
        wait_for(answers, 30, "the server to answer")


def concurrent_round(lab, key, count, arguments_for):
    """Runs fence_xvm in the first `count` guests at the same moment (guest i with `arguments_for(i)`);
    returns [(seconds, exit code, client CPU seconds)], each timed from its own start to its exit."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def client(index):
        barrier.wait()
        started = time.monotonic()
        process = subprocess.Popen([IP, "netns", "exec", lab.guests[index], FENCE_XVM, "-k", key, *arguments_for(index)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # `ip netns exec` execs fence_xvm in the same process: its rusage is the client's own CPU time.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        results[index] = (time.monotonic() - started, process.returncode, usage.ru_utime + usage.ru_stime)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def bench_concurrent_guests(directory, counts, rounds_for):
    """`rounds_for(N)`: how many rounds of N clients at once (N × rounds samples per row)."""
    lab = Lab(max(counts))
    try:
        uri = fixture_uri(directory, max(counts))
        servers = Servers(lab, directory, uri)
        table = {}
        for label in ["floor", "fence_virtd", "fencegate"]:
            process = None
            if label == "fence_virtd":
                process = servers.fence_virtd()
            elif label == "fencegate":
                process = servers.fencegate()
            for count in counts:
                samples, failures, cpu = [], 0, []
                for _ in range(rounds_for(count)):
                    if label == "floor":
                        # The same processes, sending nothing: process start-up and contention alone.
                        results = concurrent_round(lab, servers.key, count, lambda index: ["-o", "metadata"])
                    else:
                        # Each guest asks for the status of its own node.
                        results = concurrent_round(
                            lab, servers.key, count, lambda index: ["-H", f"node{index + 1}", "-o", "status", "-t", "30"])
                    for seconds, code, client_cpu in results:
                        samples.append(seconds)
                        cpu.append(client_cpu)
                        failures += code != 0
                table[(label, count)] = {
                    "p50_ms": percentile(samples, 0.5) * 1000, "p99_ms": percentile(samples, 0.99) * 1000,
                    "max_ms": max(samples) * 1000, "failures": failures, "samples": len(samples),
                    "client_cpu_ms": statistics.mean(cpu) * 1000}
                print(f"  concurrent guests: {label:11} N={count:3}  p50 {table[(label, count)]['p50_ms']:7.1f} ms"
                      f"  p99 {table[(label, count)]['p99_ms']:7.1f} ms  failures {failures}"
                      f"  client CPU {table[(label, count)]['client_cpu_ms']:.2f} ms", flush=True)
            if process is not None:
                lab.stop(process)
        return table
    finally:
        lab.destroy()


# ---------------------------------------------------------------------------------------------------------
# 1b. Load generator: many signed requests in flight, no process per request

LOAD_NAMESPACES = 4


def load_round(lab, key, concurrency, duration, domains, clients=None):
    """Runs fencegate-bench xvm-load in up to LOAD_NAMESPACES guests (or in `clients`, guest indexes),
    `concurrency` workers in all, asking about node1…node`domains` (or the names in the list `domains`)."""
    clients = list(clients or range(LOAD_NAMESPACES))
    namespaces = min(concurrency, len(clients))
    names = ",".join(domains if isinstance(domains, list) else (f"node{index}" for index in range(1, domains + 1)))
    processes = []
    for slot, index in enumerate(clients[:namespaces]):
        workers = concurrency // namespaces + (1 if slot < concurrency % namespaces else 0)
        processes.append(subprocess.Popen(
            [IP, "netns", "exec", lab.guests[index], BENCH_TOOL, "xvm-load", "--key-file", key, "--interface", "eth0",
             "--address", Lab.address(index), "--workers", str(workers), "--duration", str(duration),
             "--domains", names], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    latencies, failures, retransmissions, seconds, client_cpu = [], {}, 0, 0.0, 0.0
    for process in processes:
        out, err = process.communicate(timeout=duration + 120)
        if process.returncode != 0:
            raise RuntimeError(f"xvm-load failed: {err.strip()}")
        result = json.loads(out)
        latencies += result["latencies_ms"]
        retransmissions += result["retransmissions"]
        client_cpu += result["cpu_seconds"]
        seconds = max(seconds, result["seconds"])
        for reason, count in result["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    return {"requests_per_second": len(latencies) / seconds if seconds else 0.0,
            "p50_ms": percentile(latencies, 0.5), "p90_ms": percentile(latencies, 0.9),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else float("nan"), "answered": len(latencies),
            "failures": sum(failures.values()), "failure_reasons": failures, "retransmissions": retransmissions,
            "client_cpu_ms_per_request": client_cpu * 1000 / len(latencies) if latencies else float("nan"),
            "server_cpu_ms_per_request": float("nan")}


def measured_load_round(lab, key, concurrency, duration, processes):
    """`load_round` over 16 domains, with `NAME_cpu_ms_per_request` for each NAME: PID of `processes` (its user +
    system time over the round ÷ the requests answered)."""
    before = {name: process_cpu_seconds(pid) for name, pid in processes.items()}
    row = load_round(lab, key, concurrency, duration, 16)
    if row["answered"]:
        for name, pid in processes.items():
            row[f"{name}_cpu_ms_per_request"] = (process_cpu_seconds(pid) - before[name]) * 1000 / row["answered"]
    return row


class RemoteTestDriver:
    """A libvirtd of the benchmark's own, as `nobody` in a fresh directory, serving a test-driver world of
    `domains` domains over its socket: every libvirt read is then a call to the daemon, as on qemu:///system,
    where the embedded test driver answers in-process. Stopped, and its directory removed, on every path."""

    def __init__(self, domains):
        self.process = None
        self.directory = tempfile.mkdtemp(prefix="fencegate-bench-libvirtd-")
        try:
            os.chmod(self.directory, 0o755)  # nobody must reach its socket and world
            nobody = pwd.getpwnam("nobody")
            for name in ("home", "run"):
                os.mkdir(os.path.join(self.directory, name))
                os.chown(os.path.join(self.directory, name), nobody.pw_uid, nobody.pw_gid)
            world = fixture_uri(self.directory, domains)[len("test://"):]
            os.chmod(world, 0o644)
            socket = os.path.join(self.directory, "run/libvirt/libvirt-sock")
            self.uri = f"test+unix://{world}?socket={socket}"
            environment = {"HOME": os.path.join(self.directory, "home"),
                           "XDG_RUNTIME_DIR": os.path.join(self.directory, "run"),
                           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                           "LIBVIRT_LOG_OUTPUTS": f"3:file:{self.directory}/home/libvirtd.log"}
            self.process = subprocess.Popen(
                ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--",
                 "/usr/sbin/libvirtd"], env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            wait_for(lambda: self.process.poll() is not None or subprocess.run(
                ["virsh", "-c", self.uri, "domstate", "node1"], capture_output=True).returncode == 0, 30,
                "libvirtd")
            if self.process.poll() is not None:
                raise RuntimeError("the benchmark's libvirtd exited at start")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        try:
            if self.process:
                terminate(self.process)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def bench_load_remote(directory, duration):
    """One request in flight over a remote libvirtd (`RemoteTestDriver`), both servers; each row adds the
    daemon's CPU per request."""
    lab = Lab(LOAD_NAMESPACES)
    try:
        daemon = RemoteTestDriver(16)
        try:
            servers = Servers(lab, directory, daemon.uri)
            table = {}
            for label in ["fence_virtd", "fencegate"]:
                process = servers.fence_virtd() if label == "fence_virtd" else servers.fencegate()
                row = measured_load_round(lab, servers.key, 1, duration,
                                          {"server": process.pid, "libvirtd": daemon.process.pid})
                table[label] = row
                print(f"  load generator over a remote libvirtd: {label:11} {row['requests_per_second']:7.0f} req/s"
                      f"  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.1f} ms  failures {row['failures']}"
                      f"  CPU ms/request: server {row['server_cpu_ms_per_request']:.3f},"
                      f" libvirtd {row.get('libvirtd_cpu_ms_per_request', float('nan')):.3f}", flush=True)
                lab.stop(process)
            return table
        finally:
            daemon.stop()
    finally:
        lab.destroy()


def bench_load(directory, concurrencies, duration):
    lab = Lab(LOAD_NAMESPACES)
    try:
        uri = fixture_uri(directory, 16)
        servers = Servers(lab, directory, uri)
        table = {}
        for label in ["fence_virtd", "fencegate"]:
            process = servers.fence_virtd() if label == "fence_virtd" else servers.fencegate()
            for concurrency in concurrencies:
                row = measured_load_round(lab, servers.key, concurrency, duration, {"server": process.pid})
                table[(label, concurrency)] = row
                print(f"  load generator: {label:11} in flight {concurrency:3}  {row['requests_per_second']:7.0f} req/s"
                      f"  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:7.1f} ms  failures {row['failures']}"
                      f"  retransmissions {row['retransmissions']}  CPU ms/request: server"
                      f" {row['server_cpu_ms_per_request']:.2f}, load generator {row['client_cpu_ms_per_request']:.2f}", flush=True)
            lab.stop(process)
        return table
    finally:
        lab.destroy()


# ---------------------------------------------------------------------------------------------------------
# 2. A real hypervisor: libvirtd with QEMU (TCG) domains

QEMU_DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


class Libvirtd:
    """Uses the running libvirtd, or starts virtlogd and libvirtd in the foreground (their PIDs are ours to stop).

    A libvirtd started here runs in a private mount namespace whose /dev/kvm is a copy of the device node with
    Debian's udev permissions (root:kvm 0660). On images where /dev/kvm is root-only 0600, libvirt 9.0 finds
    the cached QEMU capabilities ("KVM usable") inconsistent with what the qemu user may open, and re-probes
    QEMU on every define (about 30 s) and start (about 4 s). Domains are of type qemu (TCG) either way."""

    def __init__(self, directory):
        self.started = []
        self.note = "the libvirtd already running"
        if self.answers():
            return
        log = open(os.path.join(directory, "libvirtd.log"), "w")
        self.started.append(subprocess.Popen(["/usr/sbin/virtlogd"], stdout=log, stderr=subprocess.STDOUT))
        command = ["/usr/sbin/libvirtd"]
        self.note = "a libvirtd started by the benchmark"
        if os.path.exists("/dev/kvm") and (os.stat("/dev/kvm").st_mode & 0o060) != 0o060:
            node = os.path.join(directory, "kvm")
            os.mknod(node, 0o660 | stat.S_IFCHR, os.stat("/dev/kvm").st_rdev)
            os.chown(node, 0, grp.getgrnam("kvm").gr_gid)
            os.chmod(node, 0o660)
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'mount --bind "{node}" /dev/kvm && exec /usr/sbin/libvirtd']
            self.note += " (its own mount namespace with /dev/kvm as root:kvm 0660, as Debian's udev rule sets it)"
        self.started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        wait_for(self.answers, 30, "libvirtd")

    @staticmethod
    def answers():
        return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0

    def stop(self):
        for process in reversed(self.started):
            terminate(process)


def virsh(*arguments, check=True):
    return sh("virsh", "-c", "qemu:///system", *arguments, check=check)


def in_parallel(commands):
    """Runs the commands at once; returns each one's seconds, and raises if one failed."""
    started = time.monotonic()
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for command in commands]
    seconds = []
    for command, process in zip(commands, processes):
        _, err = process.communicate()
        seconds.append(time.monotonic() - started)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {err.strip()}")
    return seconds


def bench_qemu(directory, virtd_concurrent_reboots):
    """Concurrent offs and reboots of real QEMU domains through the unchanged fence_xvm, both servers."""
    daemon = Libvirtd(directory)
    tag = os.urandom(2).hex()
    names = [f"fgb{tag}-vm{index}" for index in range(1, 6)]
    lab = None
    try:
        for name in names:
            path = os.path.join(directory, f"{name}.xml")
            with open(path, "w") as file:
                file.write(QEMU_DOMAIN.format(name=name))
            virsh("define", path)

        def start_all():
            in_parallel([["virsh", "-c", "qemu:///system", "start", name] for name in names])

        def running(name):
            return virsh("domstate", name).stdout.strip() == "running"

        results = {"libvirtd": daemon.note}
        # The hypervisor's own times, measured here: one destroy, one start.
        virsh("start", names[0])
        began = time.monotonic()
        virsh("destroy", names[0])
        results["destroy_seconds"] = time.monotonic() - began
        began = time.monotonic()
        virsh("start", names[0])
        results["start_seconds"] = time.monotonic() - began
        start_all_missing = [name for name in names if not running(name)]
        in_parallel([["virsh", "-c", "qemu:///system", "start", name] for name in start_all_missing])

        # The hypervisor's floor for concurrent work: five destroys, then five starts, all at once (virsh).
        results["parallel_destroys"] = in_parallel([["virsh", "-c", "qemu:///system", "destroy", name] for name in names])
        results["parallel_starts"] = in_parallel([["virsh", "-c", "qemu:///system", "start", name] for name in names])
        print(f"  qemu: virsh alone: destroy {results['destroy_seconds']:.1f} s, start {results['start_seconds']:.1f} s;"
              f" 5 at once: destroys done after {max(results['parallel_destroys']):.1f} s, starts after "
              + ", ".join(f"{value:.1f}" for value in results["parallel_starts"]) + " s", flush=True)

        lab = Lab(len(names))
        servers = Servers(lab, directory, "qemu:///system")

        def fence_all(action, count):
            rows = concurrent_round(lab, servers.key, count,
                                    lambda index: ["-H", names[index], "-o", action, "-t", "300"])
            return [seconds for seconds, _, _ in rows], sum(code != 0 for _, code, _ in rows)

        for label in ["fence_virtd", "fencegate"]:
            process = servers.fence_virtd() if label == "fence_virtd" else servers.fencegate()
            entry = results[label] = {}
            # Five guests fence five different VMs off at the same moment.
            seconds, failures = fence_all("off", len(names))
            entry["offs"] = sorted(seconds)
            entry["offs_failures"] = failures + sum(running(name) for name in names)
            print(f"  qemu: {label:11} 5 concurrent offs done after " + ", ".join(f"{value:.1f}" for value in sorted(seconds))
                  + f" s; failures {entry['offs_failures']}", flush=True)
            start_all()
            # One reboot alone.
            seconds, failures = fence_all("reboot", 1)
            entry["reboot_seconds"], entry["reboot_failures"] = seconds[0], failures + (not running(names[0]))
            print(f"  qemu: {label:11} one reboot {seconds[0]:.1f} s; failures {entry['reboot_failures']}", flush=True)
            wait_for(lambda: all(running(name) for name in names), 120, "the VMs to run")
            if label == "fencegate" or virtd_concurrent_reboots:
                # Five reboots of five VMs at once. fence_virtd serves one at a time (about five times its single
                # reboot); --skip-virtd-concurrent-reboots leaves its run out where that is long.
                seconds, failures = fence_all("reboot", len(names))
                wait_for(lambda: all(running(name) for name in names), 300, "the VMs to run again")
                entry["reboots"] = sorted(seconds)
                entry["reboots_failures"] = failures
                print(f"  qemu: {label:11} 5 concurrent reboots done after "
                      + ", ".join(f"{value:.1f}" for value in sorted(seconds)) + f" s; failures {failures}", flush=True)
            lab.stop(process)
        return results
    finally:
        if lab is not None:
            lab.destroy()
        for name in names:
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        daemon.stop()


# ---------------------------------------------------------------------------------------------------------
# 3. HTTP throughput with wrk, and 5. footprint

WRK_FENCE_SCRIPT = r"""
counter = 0
domains = tonumber(os.getenv("DOMAINS"))
request = function()
  counter = counter + 1
  local domain = (counter % domains) + 1
  local action = (math.floor(counter / domains) % 2 == 0) and "off" or "on"
  return wrk.format("POST", "/domains/node" .. domain .. "/" .. action)
end
"""


WRK_SUSHY_RESET_SCRIPT = r"""
counter = 0
request = function()
  counter = counter + 1
  local reset = (counter % 2 == 1) and "ForceOff" or "On"
  -- wrk.format's headers replace the -H ones: copy those (the credentials) in.
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("POST", os.getenv("RESET_PATH"), headers, '{"ResetType": "' .. reset .. '"}')
end
"""

SUSHY = os.path.join(ROOT, ".build-sushy-venv/bin/sushy-emulator")
MHD_CEILING_SOURCE = os.path.join(ROOT, "bench/mhd-ceiling.c")
# One wrk timeout for every server and row (a request not answered within it counts as a socket timeout).
WRK_TIMEOUT = "5s"
HTTP_CONNECTIONS = [1, 16, 64]
METRICS_CONNECTIONS = [1, 16]


def wrk(url, connections, duration, *arguments, env=None):
    """wrk with the settings every HTTP row shares (threads, --latency, --timeout); its parsed summary."""
    output = sh("wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{duration}s", "--latency",
                "--timeout", WRK_TIMEOUT, *arguments, url, env=env).stdout
    return parse_wrk(output)


def measured_wrk(pid, url, connections, duration, *arguments, env=None):
    """`wrk` against the server `pid`, with that server's CPU time (user + system, all its threads) per answered
    request over the row."""
    before = process_cpu_seconds(pid)
    row = wrk(url, connections, duration, *arguments, env=env)
    spent = process_cpu_seconds(pid) - before
    row["server_cpu_ms_per_request"] = spent * 1000 / row["requests"] if row["requests"] else None
    return row


def wrk_summary(row):
    errors = row["socket_errors"]
    return (f"{row['requests_per_second']:8.0f} req/s p99 {row['p99_ms'] or 0:7.2f} ms"
            f" CPU {row['server_cpu_ms_per_request'] or 0:.3f} ms/req non-2xx {row['non_2xx']}"
            f" socket errors {errors['connect']}/{errors['read']}/{errors['write']}/{errors['timeout']}")


def bench_sushy(directory, duration):
    """OpenStack's sushy-emulator (Redfish for libvirt VMs) on test:///default (one domain), the same wrk rows."""
    port = free_port()
    config = os.path.join(directory, "sushy.conf")
    with open(config, "w") as file:
        file.write(f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n"
                   "SUSHY_EMULATOR_LIBVIRT_URI = 'test:///default'\n")
    log = open(os.path.join(directory, "sushy.log"), "w")
    process = subprocess.Popen([SUSHY, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def answers():
            return subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{base}/redfish/v1/Systems"]).returncode == 0
        wait_for(answers, 60, "sushy-emulator")
        members = json.loads(sh("curl", "-sf", f"{base}/redfish/v1/Systems").stdout)["Members"]
        system = members[0]["@odata.id"]
        script = os.path.join(directory, "sushy-reset.lua")
        with open(script, "w") as file:
            file.write(WRK_SUSHY_RESET_SCRIPT)
        results = {"version": sh(os.path.join(os.path.dirname(SUSHY), "pip"), "show", "sushy-tools").stdout.split("\n")[1],
                   "domains": len(members)}
        for connections in HTTP_CONNECTIONS:
            results[f"status_c{connections}"] = measured_wrk(process.pid, f"{base}{system}", connections, duration)
            results[f"fence_c{connections}"] = measured_wrk(
                process.pid, base, connections, duration, "-s", script,
                env=dict(os.environ, RESET_PATH=f"{system}/Actions/ComputerSystem.Reset"))
            print(f"  sushy-emulator c={connections:2}: GET system {wrk_summary(results[f'status_c{connections}'])};"
                  f" Reset ForceOff/On {wrk_summary(results[f'fence_c{connections}'])}", flush=True)
        return results
    finally:
        terminate(process)


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_wrk(output):
    """wrk's summary: rate, p99, answered requests, non-2xx/3xx answers and socket errors by kind."""
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    count = re.search(r"(\d+) requests in", output)
    return {"requests_per_second": requests,
            "p99_ms": float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None,
            "requests": int(count.group(1)) if count else 0,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": dict(zip(["connect", "read", "write", "timeout"],
                                      map(int, socket_errors.groups()) if socket_errors else [0, 0, 0, 0]))}


def fsync_rate(directory, seconds=2):
    path = os.path.join(directory, "fsync-probe")
    count = 0
    with open(path, "wb") as file:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            file.write(b"x")
            file.flush()
            os.fsync(file.fileno())
            count += 1
    os.unlink(path)
    return count / seconds


def start_mhd_ceiling(directory):
    """bench/mhd-ceiling.c built here (cc -O2, libmicrohttpd) and started on a free loopback port: the
    library's own ceiling with Fencegate's server settings. Returns the process and its base URL."""
    program = os.path.join(directory, "mhd-ceiling")
    sh("cc", "-O2", "-o", program, MHD_CEILING_SOURCE, "-lmicrohttpd")
    process = subprocess.Popen([program, "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("http://"):
        terminate(process, 5)
        raise RuntimeError(f"mhd-ceiling did not start: {process.stderr.read().strip()}")
    return process, line.strip()


def bench_http(directory, duration):
    uri = fixture_uri(directory, 64)
    database = os.path.join(directory, "http-audit.db")
    env = dict(os.environ, FENCEGATE_DATABASE=database)
    token = sh(FENCEGATE, "token", "create", "bench", "--scope", "fence", env=env).stdout.strip()
    read_token = sh(FENCEGATE, "token", "create", "bench-read", "--scope", "read", env=env).stdout.strip()
    ceiling, ceiling_base = start_mhd_ceiling(directory)
    log = open(os.path.join(directory, "http-serve.log"), "w")
    started = time.monotonic()
    # Redfish too, on plain HTTP as sushy-emulator runs here (fence_redfish itself would need HTTPS).
    process = subprocess.Popen([FENCEGATE, "serve", "--uri", uri, "--listen", "127.0.0.1:0", "--log-level", "warning",
                                "--redfish", "--allow-plain-http"],
                               stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        line = process.stdout.readline()
        startup = time.monotonic() - started
        port = re.search(r"127\.0\.0\.1:(\d+)", line).group(1)
        base = f"http://127.0.0.1:{port}"
        time.sleep(1)
        idle_rss = rss_kib(process.pid)
        results = {"startup_seconds": startup, "idle_rss_kib": idle_rss, "wrk_timeout": WRK_TIMEOUT}
        peak_rss = idle_rss
        script = os.path.join(directory, "fence.lua")
        with open(script, "w") as file:
            file.write(WRK_FENCE_SCRIPT)
        sushy_script = os.path.join(directory, "redfish-reset.lua")
        with open(sushy_script, "w") as file:
            file.write(WRK_SUSHY_RESET_SCRIPT)
        bearer = f"Authorization: Bearer {token}"
        reader = f"Authorization: Bearer {read_token}"
        basic = "Authorization: Basic " + base64.b64encode(f"bench:{token}".encode()).decode()
        system = "/redfish/v1/Systems/node1"
        for connections in HTTP_CONNECTIONS:
            def row(name, pid, url, *arguments, env=None):
                nonlocal peak_rss
                results[f"{name}_c{connections}"] = measured_wrk(pid, url, connections, duration, *arguments, env=env)
                peak_rss = max(peak_rss, rss_kib(process.pid))
                print(f"  http c={connections:2} {name:15} {wrk_summary(results[f'{name}_c{connections}'])}", flush=True)
            # A read (read-scope token), then the same path from the fixed-body program, right after it.
            row("status", process.pid, f"{base}/domains/node1", "-H", reader)
            row("ceiling", ceiling.pid, f"{ceiling_base}/domains/node1")
            if connections in METRICS_CONNECTIONS:
                row("metrics", process.pid, f"{base}/metrics", "-H", reader)
            # Audited off/on alternating on one domain (as sushy-emulator's Reset on its one), then over 64.
            row("fence_one", process.pid, base, "-s", script, "-H", bearer, env=dict(os.environ, DOMAINS="1"))
            row("fence", process.pid, base, "-s", script, "-H", bearer, env=dict(os.environ, DOMAINS="64"))
            # The same Redfish requests as sushy-emulator gets: GET the system, Reset ForceOff/On on one domain.
            row("redfish_status", process.pid, f"{base}{system}", "-H", basic)
            row("redfish_reset", process.pid, base, "-s", sushy_script, "-H", basic,
                env=dict(os.environ, RESET_PATH=f"{system}/Actions/ComputerSystem.Reset"))
        results["loaded_rss_kib"] = peak_rss
        results["peak_rss_kib"] = rss_kib(process.pid, "VmHWM")
        rows = json.loads(sh(FENCEGATE, "audit", "--json", "--limit", "1", env=env).stdout)["operations"]
        results["audit_rows"] = rows[0]["id"] if rows else 0
        results["fsync_per_second"] = fsync_rate(directory)
        return results
    finally:
        terminate(process, 30)
        terminate(ceiling, 5)


# ---------------------------------------------------------------------------------------------------------
# 6. Soak: a million mixed requests through every front end, and the server's memory

WRK_REDFISH_RESETS_SCRIPT = r"""
counter = 0
first = tonumber(os.getenv("FIRST"))
systems = tonumber(os.getenv("SYSTEMS"))
request = function()
  counter = counter + 1
  local index = first + (counter % systems)
  local reset = (math.floor(counter / systems) % 2 == 0) and "ForceOff" or "On"
  -- wrk.format's headers replace the -H ones: copy those (the credentials) in.
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  local path = string.format("/redfish/v1/Systems/00000000-0000-4000-8000-%012d/Actions/ComputerSystem.Reset", index)
  return wrk.format("POST", path, headers, '{"ResetType": "' .. reset .. '"}')
end
"""

SOAK_DOMAINS = 64


def process_counts(pid):
    """Threads and open descriptors of a running process."""
    threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def bench_soak(directory, total, warmup, phase_seconds, budget_seconds):
    """One fencegate serves every front end at once in the namespace lab (HTTP and Redfish on its loopback,
    fence_xvm multicast on br0) while wrk and the load generator run in phases of `phase_seconds`, until
    `total` requests have been answered (or `budget_seconds` of load have passed). RSS is read after each
    phase; the growth is from the end of the phase that passed `warmup` requests to the end."""
    lab = Lab(LOAD_NAMESPACES)
    try:
        uri = fixture_uri(directory, SOAK_DOMAINS)
        servers = Servers(lab, directory, uri)
        database = os.path.join(directory, "soak-audit.db")
        env = dict(os.environ, FENCEGATE_DATABASE=database)
        read_token = sh(FENCEGATE, "token", "create", "soak-read", "--scope", "read", env=env).stdout.strip()
        fence_token = sh(FENCEGATE, "token", "create", "soak-fence", "--scope", "fence", env=env).stdout.strip()
        log_path = os.path.join(directory, "soak-serve.log")
        log = open(log_path, "w")
        process = lab.start(lab.host, [
            FENCEGATE, "serve", "--uri", uri, "--database", database, "--listen", "127.0.0.1:0",
            "--redfish", "--allow-plain-http", "--multicast", "--multicast-interface", "br0",
            "--key-file", servers.key, "--log-level", "warning"], log)
        servers.wait_answering()

        def address():
            with open(log_path) as file:
                match = re.search(r"http://127\.0\.0\.1:(\d+)", file.read())
            return match.group(1) if match else None
        wait_for(address, 30, "the HTTP address")
        base = f"http://127.0.0.1:{address()}"
        scripts = {}
        for name, body in [("fence", WRK_FENCE_SCRIPT), ("resets", WRK_REDFISH_RESETS_SCRIPT)]:
            scripts[name] = os.path.join(directory, f"soak-{name}.lua")
            with open(scripts[name], "w") as file:
                file.write(body)
        basic = "Authorization: Basic " + base64.b64encode(f"soak-fence:{fence_token}".encode()).decode()
        half = SOAK_DOMAINS // 2
        # Kind: (connections, wrk arguments, environment). REST off/on over node1…node32, Redfish Reset
        # ForceOff/On over node33…node64; the reads and fence_xvm status over node1…node16. Mostly reads, as
        # a cluster's monitoring is: an audited request costs several reads' CPU, and the soak must pass a
        # million requests in about five minutes on 2 cores shared with the load generators.
        kinds = {
            "rest_get": (12, ["-H", f"Authorization: Bearer {read_token}", f"{base}/domains/node1"], {}),
            "rest_fence": (4, ["-s", scripts["fence"], "-H", f"Authorization: Bearer {fence_token}", base],
                           {"DOMAINS": str(half)}),
            "redfish_get": (6, ["-H", basic, f"{base}/redfish/v1/Systems/00000000-0000-4000-8000-000000000002"], {}),
            "redfish_reset": (2, ["-s", scripts["resets"], "-H", basic, base],
                              {"FIRST": str(half + 1), "SYSTEMS": str(half)}),
        }
        xvm_in_flight = 4
        counts = {kind: 0 for kind in list(kinds) + ["xvm_status"]}
        errors = {kind: 0 for kind in counts}
        error_notes = []
        phases = []
        warm = None
        load_start = os.getloadavg()
        started = time.monotonic()
        loaded = 0.0
        while sum(counts.values()) < total and loaded < budget_seconds:
            running = {}
            for kind, (connections, arguments, extra) in kinds.items():
                running[kind] = subprocess.Popen(
                    [IP, "netns", "exec", lab.host, "wrk", "-t", "1", "-c", str(connections), "-d", f"{phase_seconds}s",
                     "--latency", "--timeout", WRK_TIMEOUT, *arguments],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **extra))
                lab.processes.append(running[kind])
            xvm = {}
            xvm_thread = threading.Thread(target=lambda: xvm.update(
                load_round(lab, servers.key, xvm_in_flight, phase_seconds, 16)))
            phase_began = time.monotonic()
            xvm_thread.start()
            for kind, wrk in running.items():
                out, err = wrk.communicate(timeout=phase_seconds + 60)
                if wrk.returncode != 0:
                    raise RuntimeError(f"wrk ({kind}) failed: {err.strip()}")
                result = parse_wrk(out)
                counts[kind] += result["requests"]
                errors[kind] += result["non_2xx"]
                socket_errors = sum(result["socket_errors"].values())
                if socket_errors:
                    errors[kind] += socket_errors
                    error_notes.append(f"{kind}: socket errors " + ", ".join(
                        f"{name} {count}" for name, count in result["socket_errors"].items()))
            xvm_thread.join(phase_seconds + 180)
            if "answered" not in xvm:
                raise RuntimeError("the load generator did not report")
            counts["xvm_status"] += xvm["answered"]
            errors["xvm_status"] += xvm["failures"]
            if xvm["failures"]:
                error_notes.append(f"xvm_status: {xvm['failure_reasons']}")
            loaded += time.monotonic() - phase_began
            threads, fds = process_counts(process.pid)
            phase = {"requests": sum(counts.values()), "rss_kib": rss_kib(process.pid), "threads": threads, "fds": fds,
                     "anon_kib": rss_kib(process.pid, "RssAnon"), "file_kib": rss_kib(process.pid, "RssFile"),
                     "seconds": time.monotonic() - started, "loadavg": os.getloadavg()[0]}
            phases.append(phase)
            if warm is None and phase["requests"] >= warmup:
                warm = phase
            print(f"  soak: {phase['requests']:9,} requests after {phase['seconds']:5.0f} s: RSS {phase['rss_kib'] / 1024:6.1f} MiB,"
                  f" threads {threads}, fds {fds}, errors {sum(errors.values())}", flush=True)
        duration = time.monotonic() - started
        end = phases[-1]
        time.sleep(10)
        threads, fds = process_counts(process.pid)
        settled = {"rss_kib": rss_kib(process.pid), "threads": threads, "fds": fds,
                   "anon_kib": rss_kib(process.pid, "RssAnon"), "file_kib": rss_kib(process.pid, "RssFile")}
        rows = json.loads(sh(FENCEGATE, "audit", "--json", "--limit", "1", "--database", database).stdout)["operations"]
        lab.stop(process, 30)
        warm = warm or phases[0]
        return {"requests": sum(counts.values()), "counts": counts, "errors": errors, "error_notes": error_notes[:20],
                "seconds": duration, "load_seconds": loaded, "phase_seconds": phase_seconds, "phases": phases,
                "warmup": warm, "end": end, "settled": settled, "growth_kib": end["rss_kib"] - warm["rss_kib"],
                "target_requests": total, "warmup_requests": warmup, "audit_rows": rows[0]["id"] if rows else 0,
                "connections": {kind: value[0] for kind, value in kinds.items()}, "xvm_in_flight": xvm_in_flight,
                "domains": SOAK_DOMAINS, "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    finally:
        lab.destroy()


# ---------------------------------------------------------------------------------------------------------
# 7. Cluster mode: what going through corosync CPG adds to a request

CLUSTER_GROUP = "fencegate-bench"
# totem settings as in README's corosync.conf example (--totem KEY=VALUE changes or adds one).
CLUSTER_TOTEM = [("token", "1000"), ("seqno_unchanged_const", "2")]
CLUSTER_DOMAINS = 4  # per host: host1 has h1-vm1…h1-vm4, host2 h2-vm1…, host3 h3-vm1…

# One persistent HTTP/1.1 connection, sequential requests; run inside a host's namespace. Prints JSON.
SEQUENTIAL_HTTP_CLIENT = r"""
import http.client, json, sys, time
port, token, method, path, warmup, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
headers = {"Authorization": "Bearer " + token}
latencies, failures, sample = [], {}, None
for index in range(warmup + count):
    began = time.perf_counter()
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - began
    if response.status != 200:
        failures[str(response.status)] = failures.get(str(response.status), 0) + 1
        sample = sample or body.decode(errors="replace")
    elif index >= warmup:
        latencies.append(elapsed * 1000)
        sample = sample or body.decode(errors="replace")
print(json.dumps({"latencies_ms": latencies, "failures": failures, "sample": sample}))
"""

# A bare libcpg client (ctypes), run inside a host's namespaces: the floor corosync itself sets. `ping COUNT
# WARMUP ECHO GAP`: multicasts one message (CPG_TYPE_AGREED, as Fencegate sends), waits for its delivery back
# (or, with ECHO=1, for the answer of an `echo` process on another host), GAP seconds apart; prints JSON.
# `echo`: answers every other process's ping with one message, until it is stopped.
CPG_PROBE = r"""
import ctypes, json, os, select, sys, time
cpg = ctypes.CDLL("libcpg.so.4")
class Name(ctypes.Structure):
    _fields_ = [("length", ctypes.c_uint32), ("value", ctypes.c_char * 128)]
class Address(ctypes.Structure):
    _fields_ = [("nodeid", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("reason", ctypes.c_uint32)]
Deliver = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(Name), ctypes.c_uint32, ctypes.c_uint32,
                           ctypes.c_void_p, ctypes.c_size_t)
Confchg = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(Name), ctypes.POINTER(Address), ctypes.c_size_t,
                           ctypes.POINTER(Address), ctypes.c_size_t, ctypes.POINTER(Address), ctypes.c_size_t)
class Callbacks(ctypes.Structure):
    _fields_ = [("deliver", Deliver), ("confchg", Confchg)]
class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]
CS_OK, CS_ERR_TRY_AGAIN, CPG_TYPE_AGREED, CS_DISPATCH_ALL = 1, 6, 2, 2
mode, group = sys.argv[1], sys.argv[2].encode()
delivered, members = [], [0]
def on_deliver(handle, name, nodeid, pid, message, length):
    delivered.append((pid, ctypes.string_at(message, length)))
def on_confchg(handle, name, member_list, member_count, *rest):
    members[0] = member_count
callbacks = Callbacks(Deliver(on_deliver), Confchg(on_confchg))
handle = ctypes.c_uint64()
assert cpg.cpg_initialize(ctypes.byref(handle), ctypes.byref(callbacks)) == CS_OK, "cpg_initialize"
assert cpg.cpg_join(handle, ctypes.byref(Name(len(group), group))) == CS_OK, "cpg_join"
fd = ctypes.c_int()
assert cpg.cpg_fd_get(handle, ctypes.byref(fd)) == CS_OK, "cpg_fd_get"
def dispatch(timeout):
    if select.select([fd.value], [], [], timeout)[0]:
        assert cpg.cpg_dispatch(handle, CS_DISPATCH_ALL) == CS_OK, "cpg_dispatch"
def send(data):
    buffer = ctypes.create_string_buffer(data, len(data))
    vector = IOVec(ctypes.cast(buffer, ctypes.c_void_p), len(data))
    while (result := cpg.cpg_mcast_joined(handle, CPG_TYPE_AGREED, ctypes.byref(vector), 1)) == CS_ERR_TRY_AGAIN:
        time.sleep(0.001)
    assert result == CS_OK, result
if mode == "echo":
    print("ready", flush=True)
    while True:
        dispatch(1)
        while delivered:
            pid, data = delivered.pop(0)
            if pid != os.getpid() and data.startswith(b"p"):
                send(b"e" + data[1:])
count, warmup, echo, gap = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", float(sys.argv[6])
deadline = time.monotonic() + 30
while members[0] < (2 if echo else 1) and time.monotonic() < deadline:
    dispatch(0.1)
latencies = []
for index in range(warmup + count):
    if gap:
        time.sleep(gap)
    began = time.perf_counter()
    send(b"p%d" % index)
    wanted = (b"e%d" if echo else b"p%d") % index
    while not any(data == wanted for _, data in delivered):
        if time.perf_counter() - began > 10:
            sys.exit(f"message {index} not answered within 10 s")
        dispatch(1)
    delivered.clear()
    if index >= warmup:
        latencies.append((time.perf_counter() - began) * 1000)
print(json.dumps({"latencies_ms": latencies}))
"""


class CorosyncHosts:
    """Hypervisor hosts host1…hostN: the first N guest namespaces of `lab`, on its bridge, each with its own
    corosync (knet, votequorum), built as the test suite's cluster lab builds them (see
    ../shared/docs/corosync-lab.md and Tests/TestSupport/ClusterNode.swift). Per host, a holder process keeps
    a mount and UTS namespace with private /var/lib/corosync, /run and a tmpfs /dev/shm (corosync's pid file,
    state and IPC buffers would collide otherwise) and the host name hostN (each Fencegate introduces itself
    by it); corosync.conf is /etc/netns/NAMESPACE/corosync/corosync.conf, which `ip netns exec` binds over
    /etc/corosync. Everything runs in this machine's PID namespace, so every process is ours by its PID
    (nsenter without --pid execs the command: the PID it returns is corosync's, or Fencegate's)."""

    def __init__(self, lab, directory, count, totem=()):
        self.lab, self.directory = lab, directory
        self.names = [f"host{index}" for index in range(1, count + 1)]
        self.namespaces = lab.guests[:count]
        self.holders, self.corosyncs, self.etc = [], [], []
        self.etc_netns_created = not os.path.isdir("/etc/netns")
        try:
            nodes = "".join(f"    node {{\n        ring0_addr: {Lab.address(index)}\n        name: {name}\n"
                            f"        nodeid: {index + 1}\n    }}\n" for index, name in enumerate(self.names))
            # One directive per line: corosync's parser rejects `totem { version: 2` on one line.
            config = ("totem {\n    version: 2\n    cluster_name: fgbench\n    transport: knet\n"
                      "    crypto_cipher: none\n    crypto_hash: none\n"
                      + "".join(f"    {key}: {value}\n" for key, value in totem) + "}\n"
                      f"nodelist {{\n{nodes}}}\nquorum {{\n    provider: corosync_votequorum\n}}\n"
                      "logging {\n    to_stderr: yes\n    to_syslog: no\n}\n")
            for name, namespace in zip(self.names, self.namespaces):
                base = self.path(name)
                for sub in ("lib-corosync", "run"):
                    os.makedirs(os.path.join(base, sub))
                etc = f"/etc/netns/{namespace}"
                os.makedirs(os.path.join(etc, "corosync"))
                self.etc.append(etc)
                with open(os.path.join(etc, "corosync", "corosync.conf"), "w") as file:
                    file.write(config)
                script = (f"mount --bind '{base}/lib-corosync' /var/lib/corosync && mount --bind '{base}/run' /run"
                          f" && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && hostname {name} && exec sleep infinity")
                self.holders.append(lab.start(namespace, ["unshare", "--mount", "--uts", "sh", "-c", script],
                                              open(os.path.join(base, "holder.log"), "w")))
            for name, holder in zip(self.names, self.holders):
                wait_for(lambda: holder.poll() is not None or command_name(holder.pid) == "sleep", 10, f"{name}'s mounts")
                if holder.poll() is not None:
                    raise RuntimeError(f"{name}: private mounts failed: {self.log(name, 'holder.log')}")
            for index in range(count):
                self.corosyncs.append(self.start(index, ["corosync", "-f"], "corosync"))
            for index, name in enumerate(self.names):
                wait_for(lambda: "Quorate:          Yes" in self.run(index, "corosync-quorumtool", "-s").stdout, 60,
                         f"{name}'s corosync to be quorate")
        except BaseException:
            self.destroy()
            raise

    def path(self, name, *parts):
        return os.path.join(self.directory, name, *parts)

    def log(self, name, file):
        with open(self.path(name, file), errors="replace") as text:
            return text.read()[-2000:]

    def enter(self, index):
        return ["nsenter", "-t", str(self.holders[index].pid), "-m", "-u", "-n", "--"]

    def start(self, index, command, log_name):
        """Starts `command` in host `index` (its network, mount and UTS namespaces); output in LOG_NAME.out/.err."""
        name = self.names[index]
        process = subprocess.Popen(self.enter(index) + command, stdin=subprocess.DEVNULL,
                                   stdout=open(self.path(name, f"{log_name}.out"), "w"),
                                   stderr=open(self.path(name, f"{log_name}.err"), "w"))
        self.lab.processes.append(process)
        return process

    def run(self, index, *command):
        return sh(*self.enter(index), *command, check=False)

    def serve(self, index, uri, database, key, log_name, cluster=True):
        """`fencegate serve` on host `index` (HTTP on its loopback, fence_xvm multicast on its eth0 unless
        `key` is None); returns the process and its HTTP port."""
        command = [FENCEGATE, "serve", "--uri", uri, "--database", database, "--listen", "127.0.0.1:0",
                   "--log-level", "warning"]
        if cluster:
            command += ["--cluster", CLUSTER_GROUP]
        if key:
            command += ["--multicast", "--multicast-interface", "eth0", "--key-file", key]
        process = self.start(index, command, log_name)
        found = {}

        def serving():
            if process.poll() is not None:
                raise RuntimeError(f"fencegate serve on {self.names[index]} exited:"
                                   f" {self.log(self.names[index], log_name + '.err')}")
            match = re.search(r"http://127\.0\.0\.1:(\d+)", self.log(self.names[index], log_name + ".out"))
            found["port"] = match and int(match.group(1))
            return found["port"]
        wait_for(serving, 30, f"fencegate on {self.names[index]} to serve")
        return process, found["port"]

    def cpg_probe(self, index, group, count, warmup, echo, gap):
        """CPG_PROBE's ping on host `index`: latencies in ms."""
        result = sh(*self.enter(index), sys.executable, "-c", CPG_PROBE, "ping", group, str(count), str(warmup),
                    "1" if echo else "0", str(gap), check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the CPG probe on {self.names[index]} failed: {result.stderr.strip()[-500:]}")
        return json.loads(result.stdout)["latencies_ms"]

    def destroy(self):
        for process in self.corosyncs:
            terminate(process, 10)
        for process in self.holders:
            terminate(process, 5)
        for etc in self.etc:
            shutil.rmtree(etc, ignore_errors=True)
        if self.etc_netns_created:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as file:
            return file.read().strip()
    except OSError:
        return None


def latency_summary(latencies):
    return {"p50_ms": percentile(latencies, 0.5), "p90_ms": percentile(latencies, 0.9),
            "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies) if latencies else float("nan"),
            "answered": len(latencies)}


def bench_cluster(directory, requests, rounds, xvm_duration, in_flight_levels, probes, virtd_checks, totem=()):
    """Three corosync hosts, each running `fencegate serve --cluster` on a test-driver world of its own, and a
    client namespace on the same bridge. HTTP: sequential requests to host1 about a domain on host1 (placed
    here through the group), on host2 (forwarded), and the same requests to a Fencegate without --cluster on
    host1 (the baseline, also measured while a bare CPG client keeps corosync busy), interleaved in rounds.
    fence_xvm: the load generator's status requests heard by all three hosts, against one Fencegate and one
    fence_virtd on host1 alone. Then corosync's own floor (a bare libcpg client), and whether fence_virtd's
    cpg backend answers right."""
    hosts_count = 3
    lab = Lab(hosts_count + 1)  # guests 1-3 are the hosts, guest 4 the client (fence_xvm's side)
    client = hosts_count
    hosts = None
    try:
        totem = list({**dict(CLUSTER_TOTEM), **dict(totem)}.items())
        hosts = CorosyncHosts(lab, directory, hosts_count, totem)
        uris = [fixture_uri(directory, CLUSTER_DOMAINS, prefix=f"h{index + 1}-vm", first=1000 * (index + 1))
                for index in range(hosts_count)]
        key = Servers(lab, directory, uris[0]).key
        results = {"hosts": hosts_count, "loadavg_start": os.getloadavg(), "totem": [f"{k}: {v}" for k, v in totem],
                   "corosync": sh("dpkg-query", "-W", "-f=${Version}", "corosync", check=False).stdout.strip()}

        def token(database):
            env = dict(os.environ, FENCEGATE_DATABASE=database)
            return sh(FENCEGATE, "token", "create", "bench", "--scope", "fence", env=env).stdout.strip()

        def cpu(processes):
            return sum(process_cpu_seconds(process.pid) for process in processes)

        # fence_xvm against one server on host1, without the cluster: fence_virtd, then Fencegate.
        xvm = results["xvm"] = {}

        def xvm_rows(label, processes, names):
            for level in in_flight_levels:
                before = cpu(processes)
                row = load_round(lab, key, level, xvm_duration, names, clients=[client])
                if row["answered"]:
                    row["server_cpu_ms_per_request"] = (cpu(processes) - before) * 1000 / row["answered"]
                xvm.setdefault(label, {})[level] = row
                print(f"  cluster, fence_xvm: {label:17} in flight {level:2}  {row['requests_per_second']:6.0f} req/s"
                      f"  p50 {row['p50_ms']:5.2f} ms  p99 {row['p99_ms']:6.2f} ms  failures {row['failures']}"
                      f"  retransmissions {row['retransmissions']}  CPU {row['server_cpu_ms_per_request']:.2f} ms/request",
                      flush=True)

        alone = Servers(lab, directory, uris[0], namespace=hosts.namespaces[0], interface="eth0",
                        client=lab.guests[client])
        for label in ["fence_virtd", "fencegate"]:
            process = alone.fence_virtd() if label == "fence_virtd" else alone.fencegate()
            xvm_rows(label, [process], [f"h1-vm{index}" for index in range(1, hosts_count + 1)])
            lab.stop(process)

        # The cluster: fencegate serve --cluster on every host; beside it on host1, the baseline for HTTP (no
        # --cluster, no fence_xvm listener, the same world): each idle while the other is measured.
        servers, ports, tokens = [], [], []
        for index in range(hosts_count):
            database = hosts.path(hosts.names[index], "audit.db")
            tokens.append(token(database))
            process, port = hosts.serve(index, uris[index], database, key, "serve")
            servers.append(process)
            ports.append(port)
        baseline_database = hosts.path("host1", "baseline-audit.db")
        baseline_token = token(baseline_database)
        baseline, baseline_port = hosts.serve(0, uris[0], baseline_database, None, "baseline", cluster=False)

        def metrics(index, port, bearer):
            """Host `index`'s metrics at `port`, each summed over its labels."""
            text = hosts.run(index, "curl", "-s", "-H", f"Authorization: Bearer {bearer}",
                             f"http://127.0.0.1:{port}/metrics").stdout
            totals = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, value = line.split("{")[0].split(" ")[0], line.rsplit(" ", 1)[1]
                    totals[name] = totals.get(name, 0.0) + float(value)
            return totals

        def resolves(name):
            status = hosts.run(0, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                               f"Authorization: Bearer {tokens[0]}", f"http://127.0.0.1:{ports[0]}/domains/{name}")
            return status.stdout == "200"
        began = time.monotonic()
        wait_for(lambda: all(resolves(f"h{index + 1}-vm1") for index in range(hosts_count)), 60,
                 "host1 to know every host's domains")
        results["known_after_seconds"] = time.monotonic() - began

        # HTTP cases: (name, receiving server, port, token, method, path). `on` of a running domain takes a
        # fence's whole path (audit rows, the group, the executor's libvirt call) and changes nothing, so every
        # request is alike; the REST API has no POST for status, and GET /domains/{d} is a read that the
        # receiving host answers from the hosts' reports, without the group. `baseline_busy`: the baseline
        # while a bare CPG client on host3 multicasts one message every 5 ms, as a request does now and then:
        # corosync's share of the machine's 2 cores, without any cluster work in Fencegate.
        cases = [
            ("baseline", baseline, baseline_port, baseline_token, "POST", "/domains/h1-vm1/on"),
            ("baseline_busy", baseline, baseline_port, baseline_token, "POST", "/domains/h1-vm1/on"),
            ("here", servers[0], ports[0], tokens[0], "POST", "/domains/h1-vm1/on"),
            ("forwarded", servers[0], ports[0], tokens[0], "POST", "/domains/h2-vm1/on"),
            ("read_baseline", baseline, baseline_port, baseline_token, "GET", "/domains/h1-vm1"),
            ("read_cluster", servers[0], ports[0], tokens[0], "GET", "/domains/h2-vm1"),
        ]
        http = results["http"] = {}
        per_round = max(requests // rounds, 1)
        for round_index in range(rounds):
            for case, server, port, bearer, method, path in cases:
                busy = None
                if case == "baseline_busy":
                    busy = hosts.start(2, [sys.executable, "-c", CPG_PROBE, "ping", "fencegate-bench-busy", "1000000",
                                           "0", "0", "0.005"], "cpg-busy")
                    time.sleep(0.5)
                receiver_before = metrics(0, port, bearer)
                executor_before = metrics(1, ports[1], tokens[1])
                cpu_before = (cpu([server]), cpu(servers[1:]), cpu(hosts.corosyncs))
                result = sh(IP, "netns", "exec", hosts.namespaces[0], sys.executable, "-c", SEQUENTIAL_HTTP_CLIENT,
                            str(port), bearer, method, path, str(200 if round_index == 0 else 20), str(per_round))
                cpu_after = (cpu([server]), cpu(servers[1:]), cpu(hosts.corosyncs))
                if busy is not None:
                    terminate(busy, 5)
                receiver_after = metrics(0, port, bearer)
                executor_after = metrics(1, ports[1], tokens[1])
                answer = json.loads(result.stdout)
                entry = http.setdefault(case, {"method": method, "path": path, "latencies": [], "failures": {},
                                               "cpu": [0.0, 0.0, 0.0], "metrics": {}})
                entry["latencies"] += answer["latencies_ms"]
                for status, number in answer["failures"].items():
                    entry["failures"][status] = entry["failures"].get(status, 0) + number
                entry["cpu"] = [total + after - before for total, before, after in zip(entry["cpu"], cpu_before, cpu_after)]
                for side, before, after in [("receiver", receiver_before, receiver_after),
                                            ("executor", executor_before, executor_after)]:
                    for name in ["fencegate_operation_duration_seconds_sum", "fencegate_operation_duration_seconds_count",
                                 "fencegate_cluster_forwarded_duration_seconds_sum",
                                 "fencegate_cluster_forwarded_duration_seconds_count"]:
                        entry["metrics"][f"{side} {name}"] = (entry["metrics"].get(f"{side} {name}", 0.0)
                                                             + after.get(name, 0.0) - before.get(name, 0.0))
                entry["sample"] = answer["sample"]
        for case, entry in http.items():
            latencies = entry.pop("latencies")
            entry.update(latency_summary(latencies))
            count = max(len(latencies), 1)
            cpu_receiver, cpu_others, cpu_corosync = (value * 1000 / count for value in entry.pop("cpu"))
            entry.update(cpu_receiver_ms=cpu_receiver, cpu_other_hosts_ms=cpu_others, cpu_corosync_ms=cpu_corosync)
            found = entry.pop("metrics")

            def mean_ms(side, name):
                number = found[f"{side} {name}_count"]
                return found[f"{side} {name}_sum"] * 1000 / number if number else None
            entry["receiver_operation_ms"] = mean_ms("receiver", "fencegate_operation_duration_seconds")
            entry["receiver_group_ms"] = mean_ms("receiver", "fencegate_cluster_forwarded_duration_seconds")
            entry["executor_operation_ms"] = mean_ms("executor", "fencegate_operation_duration_seconds")
            try:
                entry["note"] = json.loads(entry.pop("sample") or "{}").get("note")
            except ValueError:
                entry["note"] = None
            # The answers say where each request ran: a forwarded one names its executor.
            if (case == "forwarded") != (entry["note"] or "").startswith("executed on host2 "):
                raise RuntimeError(f"{case}: not executed where expected (its answer's note: {entry['note']})")
            print(f"  cluster, HTTP {entry['method']:4} {entry['path']:19} {case:13} p50 {entry['p50_ms']:5.2f}"
                  f"  p90 {entry['p90_ms']:5.2f}  p99 {entry['p99_ms']:5.2f} ms  failures {sum(entry['failures'].values())}"
                  f"  CPU ms/request: host1 {cpu_receiver:.2f}, host2+3 {cpu_others:.2f}, corosyncs {cpu_corosync:.2f};"
                  f" note: {entry['note']}", flush=True)
        lab.stop(baseline)

        # fence_xvm heard by the three hosts: each claims the call back through the group, the first claim
        # delivered calls back, the domain's host executes. Who called back: each host's requests sent to the
        # group (fencegate_cluster_forwarded_total).
        def performed():
            return [metrics(index, ports[index], tokens[index]).get("fencegate_cluster_forwarded_total", 0.0)
                    for index in range(hosts_count)]
        before = performed()
        xvm_rows("fencegate_cluster", servers + hosts.corosyncs, [f"h{index + 1}-vm1" for index in range(hosts_count)])
        results["xvm_callbacks_per_host"] = [after - earlier for after, earlier in zip(performed(), before)]
        for process in servers:
            lab.stop(process, 30)

        # corosync's own floor: a bare libcpg client, one message after another (back to back, or 20 ms apart
        # as isolated requests are), waiting for its delivery back to itself (one message: what a request
        # placed on its own host waits for) or for an answer from host2 (two messages: a forwarded request).
        floor = results["cpg_floor"] = {}
        for echo in [False, True]:
            echoer = None
            if echo:
                echoer = hosts.start(1, [sys.executable, "-c", CPG_PROBE, "echo", "fencegate-bench-floor"], "cpg-echo")
                wait_for(lambda: "ready" in hosts.log("host2", "cpg-echo.out"), 30, "the CPG echo on host2")
            for gap in [0, 0.02]:
                before = cpu(hosts.corosyncs)
                latencies = hosts.cpg_probe(0, "fencegate-bench-floor", probes, 20, echo, gap)
                row = latency_summary(latencies)
                row["cpu_corosync_ms"] = (cpu(hosts.corosyncs) - before) * 1000 / (probes + 20)
                floor[f"{'echo' if echo else 'self'} {gap}"] = row
                print(f"  cluster, CPG floor: {'host1 → host2 → host1' if echo else 'host1 → host1':21} gap {gap * 1000:2.0f} ms"
                      f"  p50 {row['p50_ms']:5.2f}  p90 {row['p90_ms']:5.2f}  p99 {row['p99_ms']:5.2f} ms"
                      f"  corosync CPU {row['cpu_corosync_ms']:.2f} ms/message", flush=True)
            if echoer is not None:
                terminate(echoer, 5)

        results["virtd_cpg"] = check_virtd_cpg(lab, hosts, key, uris, client, virtd_checks)
        results["loadavg_end"] = os.getloadavg()
        return results
    finally:
        if hosts is not None:
            hosts.destroy()
        lab.destroy()


def check_virtd_cpg(lab, hosts, key, uris, client, checks):
    """fence_virtd with its cpg backend on every host (its own config and pid file each), asked by the
    unchanged fence_xvm for the status of running domains of each host in turn: how many answers are right.
    Every fence_virtd that hears the multicast calls back and answers from its own view (see
    ../shared/docs/corosync-lab.md), so the answer can come from a host that does not run the domain."""
    daemons = []
    try:
        for index, name in enumerate(hosts.names):
            config = hosts.path(name, "fence_virt-cpg.conf")
            with open(config, "w") as file:
                file.write(f'fence_virtd {{ listener = "multicast"; backend = "cpg"; }}\n'
                           f'listeners {{ multicast {{ key_file = "{key}"; address = "225.0.0.12"; interface = "eth0"; }} }}\n'
                           f'backends {{ cpg {{ uri = "{uris[index]}"; name_mode = "name"; }} }}\n')
            os.chmod(config, 0o600)
            daemons.append(hosts.start(index, [FENCE_VIRTD, "-F", "-p", hosts.path(name, "fence_virtd-cpg.pid"),
                                               "-f", config], "fence_virtd-cpg"))
        time.sleep(5)  # their CPG group forms
        answers = {"right": 0, "off": 0, "failed": 0}
        for index in range(checks):
            result = subprocess.run([IP, "netns", "exec", lab.guests[client], FENCE_XVM, "-k", key, "-o", "status",
                                     "-H", f"h{index % len(hosts.names) + 1}-vm1", "-t", "5"], capture_output=True)
            answers["right" if result.returncode == 0 else "off" if result.returncode == 2 else "failed"] += 1
        print(f"  cluster, fence_virtd cpg backend: {checks} status calls for running domains: {answers['right']} on,"
              f" {answers['off']} off (wrong), {answers['failed']} failed", flush=True)
        return {"checks": checks, **answers}
    finally:
        for daemon in daemons:
            terminate(daemon, 10)


def machine_busy_seconds():
    """CPU time the whole machine has spent busy (every core), and this process's with its reaped children."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    busy = sum(fields[index] for index in (0, 1, 2, 5, 6, 7))  # user nice system irq softirq steal
    with open("/proc/self/stat") as file:
        own = file.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return busy / ticks, sum(int(own[index]) for index in (11, 12, 13, 14)) / ticks


def bench_cluster_measured(directory, **options):
    """bench_cluster, and how much of the machine's CPU other processes took meanwhile: the machine's busy
    time minus this benchmark's (every process it started is its child and reaped by the end)."""
    busy, own = machine_busy_seconds()
    started = time.monotonic()
    results = bench_cluster(directory, **options)
    busy_after, own_after = machine_busy_seconds()
    seconds = time.monotonic() - started
    results["seconds"] = seconds
    results["others_cpu_share"] = max(0.0, (busy_after - busy) - (own_after - own)) / (seconds * (os.cpu_count() or 1))
    print(f"  cluster: {seconds:.0f} s; other processes on the machine used {results['others_cpu_share']:.0%} of its CPU"
          " meanwhile", flush=True)
    return results


# ---------------------------------------------------------------------------------------------------------

def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Linux {platform.release()}"


SCENARIOS = ["concurrent", "loadgen", "qemu", "http", "audit", "soak", "cluster"]


def versions():
    def package(name):
        return sh("dpkg-query", "-W", "-f=${Version}", name, check=False).stdout.strip() or "not installed"
    return {"fencegate": measured_commit(),
            "fence-virtd": package("fence-virtd"), "fence-virt": package("fence-virt"),
            "libvirt": package("libvirt0"), "qemu": package("qemu-system-x86"), "wrk": package("wrk"),
            "corosync": package("corosync")}


def measured_commit():
    """The commit of the binaries measured, as `fencegate --version` states it ("fencegate 0.9.0 (git abc1234)",
    "-dirty" when built from a tree with uncommitted changes); else the build directory's work tree."""
    stated = sh(FENCEGATE, "--version", check=False).stdout
    match = re.search(r"\(git ([0-9a-f]{7,40})(-dirty)?\)", stated)
    if match:
        return match.group(1) + (" with uncommitted changes" if match.group(2) else "")
    tree = os.path.dirname(FENCEGATE)
    commit = sh("git", "-C", tree, "rev-parse", "--short", "HEAD", check=False).stdout.strip() or "unknown commit"
    dirty = sh("git", "-C", tree, "status", "--porcelain", "--untracked-files=no", check=False).stdout.strip()
    return commit + (" with uncommitted changes" if dirty else "")


def concurrent_rounds(quick):
    """Rounds of N clients at once: a p99 needs at least 200 samples, so N × rounds ≥ 200 for N ≤ 20 in a full
    run (N = 50 gets 250 from 5 rounds); a quick run keeps 2 rounds and reports no p99."""
    if quick:
        return lambda count: 2
    return lambda count: max(5, -(-200 // count)) if count <= 20 else 5


def totem_setting(text):
    key, separator, value = text.partition("=")
    if not separator or not re.fullmatch(r"[a-z_]+", key) or not re.fullmatch(r"[0-9A-Za-z_.]+", value):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a corosync totem directive), got {text!r}")
    return key, value


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and rows (smoke test)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--skip-virtd-concurrent-reboots", action="store_true",
                        help="do not time 5 concurrent reboots through fence_virtd (one at a time: 5 × its reboot)")
    parser.add_argument("--only", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable); the report then holds only these")
    parser.add_argument("--build-dir", help="take fencegate and fencegate-bench from this directory instead of"
                        " .build/release (e.g. another work tree's, to measure an older commit)")
    parser.add_argument("--soak-requests", type=int, default=1_000_000, help="soak: requests in all (default %(default)s)")
    parser.add_argument("--json", help="also write the raw results to this JSON file")
    parser.add_argument("--merge", action="store_true",
                        help="with --only: replace only these scenarios' sections (and their rows under Targets) in the"
                        " existing output file, keeping the rest of it")
    parser.add_argument("--totem", action="append", default=[], type=totem_setting, metavar="KEY=VALUE",
                        help="cluster: one more directive in the corosyncs' totem section (repeatable), e.g."
                        " seqno_unchanged_const=30 (corosync's default; the lab's is README's, 2)")
    options = parser.parse_args()
    if options.build_dir:
        global FENCEGATE, BENCH_TOOL
        FENCEGATE = os.path.join(os.path.abspath(options.build_dir), "fencegate")
        BENCH_TOOL = os.path.join(os.path.abspath(options.build_dir), "fencegate-bench")
    quick = options.quick
    directory = tempfile.mkdtemp(prefix="fencegate-bench-")
    arguments, skip = [], False
    for argument in sys.argv[1:]:  # the command line, without where its outputs went
        if skip or argument.startswith(("--output=", "--json=")):
            skip = False
        elif argument in ("--output", "--json"):
            skip = True
        else:
            arguments.append(argument)
    results = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "command": " ".join(["bench/run"] + arguments), "versions": versions()}
    started = time.monotonic()
    wanted = set(options.only or SCENARIOS)
    try:
        if "concurrent" in wanted:
            CURRENT_SCENARIO[0] = "concurrent"
            print("1. concurrent guests (unchanged fence_xvm, status)", flush=True)
            counts = [1, 5, 10] if quick else [1, 5, 10, 20, 50]
            results["concurrent"] = bench_concurrent_guests(directory, counts, concurrent_rounds(quick))
        if "loadgen" in wanted:
            CURRENT_SCENARIO[0] = "loadgen"
            print("1b. load generator (signed fence_xvm status requests, no process per request)", flush=True)
            results["loadgen"] = bench_load(directory, [1, 8, 32], 3 if quick else 8)
            results["loadgen_remote"] = bench_load_remote(directory, 3 if quick else 8)
        if "qemu" in wanted:
            CURRENT_SCENARIO[0] = "qemu"
            print("2. real hypervisor (libvirtd, QEMU TCG domains, unchanged fence_xvm)", flush=True)
            results["qemu"] = bench_qemu(directory, not options.skip_virtd_concurrent_reboots)
        if "http" in wanted:
            CURRENT_SCENARIO[0] = "http"
            print("3. HTTP (wrk on loopback) and 5. footprint", flush=True)
            results["http"] = bench_http(directory, 3 if quick else 10)
            results["sushy"] = bench_sushy(directory, 3 if quick else 10)
        if "audit" in wanted:
            CURRENT_SCENARIO[0] = "audit"
            print("4. audit log at scale", flush=True)
            rows = 100_000 if quick else 1_000_000
            results["audit"] = json.loads(sh(BENCH_TOOL, "audit-scale", "--rows", str(rows), "--database",
                                             os.path.join(directory, "scale.db")).stdout)
        if "soak" in wanted:
            CURRENT_SCENARIO[0] = "soak"
            print("6. soak (mixed requests through every front end; the server's memory)", flush=True)
            total = min(options.soak_requests, 200_000) if quick else options.soak_requests
            results["soak"] = bench_soak(directory, total, warmup=max(total // 10, 1), phase_seconds=5 if quick else 10,
                                         budget_seconds=120 if quick else 330)
        if "cluster" in wanted:
            CURRENT_SCENARIO[0] = "cluster"
            print("7. cluster mode (three corosync hosts: the latency the group adds)", flush=True)
            results["cluster"] = bench_cluster_measured(directory, requests=300 if quick else 2000, rounds=4,
                                               xvm_duration=3 if quick else 8, in_flight_levels=[1, 8],
                                               probes=100 if quick else 500, virtd_checks=6 if quick else 15,
                                               totem=options.totem)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    results["peak_rss_kib"] = dict(PEAK_RSS_KIB)
    if options.json:
        with open(options.json, "w") as file:
            json.dump({key: ({" ".join(map(str, k)) if isinstance(k, tuple) else k: v for k, v in value.items()}
                             if isinstance(value, dict) else value) for key, value in results.items()},
                      file, indent=2, default=str)
    write_report(results, options.output, options.merge)
    print(f"wrote {options.output} ({results['seconds']:.0f} s)")


def write_report(results, path, merge=False):
    from report import merge as merged, render
    if merge and os.path.exists(path):
        with open(path) as file:
            text = merged(file.read(), results)
    else:
        text = render(results)
    with open(path, "w") as file:
        file.write(text)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
