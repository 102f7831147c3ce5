"""Renders bench.py's results as BENCHMARKS.md: the figures of one run, the targets, and the profile notes."""
import math
import os
import re

NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile-notes.md")
SCENARIO_SENTENCE = ("scenario (concurrent, loadgen, qemu, http, audit, soak, cluster) for a quick look, and with `--merge` replaces"
                     " only that scenario's section (and its rows under Targets) in this file, keeping the rest.")


# A p99 from fewer samples than this is not reported (it would be the maximum of a few).
P99_MINIMUM_SAMPLES = 200
# Marks each scenario's line with Fencegate's peak RSS; merge() reads them back for the whole-bench target.
PEAK_LINE = "Fencegate's peak RSS in this scenario"
# Which section each scenario's Fencegate runs in (audit runs none).
SCENARIO_SECTIONS = {"concurrent": "1", "loadgen": "1b", "qemu": "2", "http": "3", "soak": "6", "cluster": "7"}


def known(value):
    """`value` as a number, or None where it is missing or not a number (NaN)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def ratio(numerator, denominator):
    """numerator ÷ denominator, or None unless both are known and the denominator is positive."""
    numerator, denominator = known(numerator), known(denominator)
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fmt(value, spec=".2f", suffix=""):
    """A number as `spec` (with `suffix`), or "n/a" where it is missing or NaN."""
    value = known(value)
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def ms(value):
    value = known(value)
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def mib(kib):
    return fmt(None if known(kib) is None else kib / 1024, ".1f", " MiB")


def seconds_list(values):
    return ", ".join(f"{value:.1f}" for value in values)


def render(results):
    targets = []  # (what, target, measured, met)
    versions = results.get("versions", {})
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} on {results['machine']}, by `{results['command']}` (as root; the whole run took "
        f"{results['seconds']:.0f} s). `bench/run` reproduces it and rewrites this file; `bench/run --only NAME` runs one",
        SCENARIO_SENTENCE,
        "",
        f"Versions: Fencegate {versions.get('fencegate', '?')}; fence_virtd {versions.get('fence-virtd', '?')} and fence_xvm"
        f" {versions.get('fence-virt', '?')} (Debian); libvirt {versions.get('libvirt', '?')}; QEMU {versions.get('qemu', '?')};"
        f" wrk {versions.get('wrk', '?')}; corosync {versions.get('corosync', '?')}.",
        "",
        "Every figure below comes from that one run. fence_virtd (its own pid file and config) and Fencegate run one",
        "after the other in the same network-namespace lab (a host namespace with bridge br0 and guest namespaces on",
        "veth ports, 198.18.0.0/23), on the same libvirt world and key, driven by the same unchanged clients.",
        "",
    ]
    peaks = results.get("peak_rss_kib") or {}

    def with_peak(section, scenario):
        """The section's lines, with Fencegate's peak RSS in its scenario as their last paragraph."""
        if section and scenario in peaks:
            section = section + [f"{PEAK_LINE} (VmHWM of every `fencegate serve` it ran, read before each"
                                      f" stopped): {peaks[scenario] / 1024:.1f} MiB.", ""]
        return section
    lines += with_peak(render_concurrent(results.get("concurrent"), targets), "concurrent")
    lines += with_peak(render_loadgen(results.get("loadgen"), targets, results.get("loadgen_remote")), "loadgen")
    lines += with_peak(render_qemu(results.get("qemu"), targets), "qemu")
    lines += with_peak(render_http(results.get("http"), results.get("sushy"), targets), "http")
    lines += render_audit(results.get("audit"), targets)
    lines += render_footprint(results.get("http"))
    lines += with_peak(render_soak(results.get("soak"), targets), "soak")
    lines += with_peak(render_cluster(results.get("cluster"), targets), "cluster")
    targets += issue17_targets(results)
    if targets:
        lines += ["## Targets", "", "| what | target | measured | met |", "|---|---|---|---|"]
        for what, target, measured, met in targets:
            lines.append(f"| {what} | {target} | {measured} | {'n/a' if met is None else 'yes' if met else '**no**'} |")
        lines += ["", "Where a target is missed, the profile notes below give the cause.", ""]
    if os.path.exists(NOTES):
        with open(NOTES) as file:
            lines += [file.read().rstrip(), ""]
    return "\n".join(lines)


def p99(row):
    """A row's p99, or None when it rests on fewer than P99_MINIMUM_SAMPLES samples."""
    return row["p99_ms"] if row.get("samples", 0) >= P99_MINIMUM_SAMPLES else None


def p99_cell(row):
    value = p99(row)
    return ms(value) if value is not None else f"n/a (<{P99_MINIMUM_SAMPLES} samples)"


def above_floor(concurrent, count):
    """(p99 above the floor for fence_virtd, for Fencegate, ratio gate ÷ virtd) at N = count, each None where a
    p99 is missing; a server below the floor counts as 0 above it (both sides alike)."""
    floor, virtd, gate = (p99(concurrent[(label, count)]) for label in ("floor", "fence_virtd", "fencegate"))
    if floor is None or virtd is None or gate is None:
        return None, None, None
    above_virtd, above_gate = virtd - floor, gate - floor
    return above_virtd, above_gate, ratio(max(above_gate, 0), max(above_virtd, 0))


def render_concurrent(concurrent, targets):
    if not concurrent:
        return []
    counts = sorted({count for (_, count) in concurrent})
    samples = ", ".join(f"N = {count}: {concurrent[('fencegate', count)].get('samples', 0)}" for count in counts)
    lines = [
        "## 1. Concurrent guests (the unchanged fence_xvm)",
        "",
        "N guest namespaces each run `fence_xvm -o status -H nodeI` at the same moment (several rounds); latency is",
        "each client process's wall time. The floor is the same processes running `fence_xvm -o metadata`, which",
        "sends nothing: process start-up and CPU contention on the machine's cores. Client CPU is the mean CPU time",
        f"of one fence_xvm process (user + system, from its rusage). Samples per row ({samples}): a p99 is reported",
        f"from {P99_MINIMUM_SAMPLES} samples or more; the ratio compares the p99s above the floor, a negative one"
        " counted as 0.",
        "",
        "| N | floor p50 / p99 (ms) | fence_virtd p50 / p99 / max (ms) | Fencegate p50 / p99 / max (ms) | failures (virtd / gate) "
        "| client CPU: floor / status (ms) | p99 above floor: virtd / gate (ms) | ratio gate ÷ virtd |",
        "|---:|---|---|---|---|---|---|---:|",
    ]
    for count in counts:
        floor = concurrent[("floor", count)]
        virtd = concurrent[("fence_virtd", count)]
        gate = concurrent[("fencegate", count)]
        above_virtd, above_gate, ratio_gate = above_floor(concurrent, count)
        lines.append(
            f"| {count} | {ms(floor['p50_ms'])} / {p99_cell(floor)} "
            f"| {ms(virtd['p50_ms'])} / {p99_cell(virtd)} / {ms(virtd['max_ms'])} "
            f"| {ms(gate['p50_ms'])} / {p99_cell(gate)} / {ms(gate['max_ms'])} "
            f"| {virtd['failures']} / {gate['failures']} "
            f"| {fmt(floor.get('client_cpu_ms'), '.1f')} / {fmt(gate.get('client_cpu_ms'), '.1f')} "
            f"| {ms(above_virtd)} / {ms(above_gate)} | {fmt(ratio_gate)} |")
    count = counts[-1]
    floor, gate = concurrent[("floor", count)], concurrent[("fencegate", count)]
    above_virtd, _, ratio_last = above_floor(concurrent, count)
    cores = os.cpu_count() or 1
    client_cpu = gate.get("client_cpu_ms", 0) - floor.get("client_cpu_ms", 0)
    lines += [
        "",
        f"At N = {count}, the clients themselves need {client_cpu:.1f} ms"
        f" of CPU each beyond the floor (TCP listener, challenge-response, hashing): {count} × that ÷ {cores} cores ="
        f" {count * client_cpu / cores:.0f} ms of wall time above the floor that no server can remove"
        + (f", against fence_virtd's {ms(above_virtd)} ms." if above_virtd is not None else
           f" (fence_virtd's p99 above the floor: n/a, fewer than {P99_MINIMUM_SAMPLES} samples)."),
        "",
    ]
    targets.append((f"{count} guests: p99 above floor, Fencegate ÷ fence_virtd", "≤ 0.20", fmt(ratio_last),
                    None if ratio_last is None else ratio_last <= 0.20))
    return lines


def render_loadgen(loadgen, targets, remote=None):
    if not loadgen:
        return []
    levels = sorted({level for (_, level) in loadgen})
    lines = [
        "## 1b. Load generator (no process per request)",
        "",
        "`fencegate-bench xvm-load` (a client written from the protocol document: it signs each request, multicasts",
        "it from its guest namespace, takes the call back on its own listener and runs the client's half of the",
        "challenge-response) keeps a fixed number of `status` requests in flight from 4 guest namespaces, over 16",
        "domains, back to back. Both servers share the machine's cores with the load generator. A retransmission is",
        "a request the load generator multicast again because no call back came in time. CPU per request is the",
        "server process's user + system time over the row ÷ the requests answered in it.",
        "",
        "| in flight | fence_virtd req/s | p50 / p99 | Fencegate req/s | p50 / p99 | failures (virtd / gate) "
        "| retransmissions (virtd / gate) | ratio req/s | CPU per request: virtd / gate / load generator | ratio CPU gate ÷ virtd |",
        "|---:|---:|---|---:|---|---|---|---:|---|---:|",
    ]
    for level in levels:
        virtd, gate = loadgen[("fence_virtd", level)], loadgen[("fencegate", level)]
        virtd_cpu, gate_cpu = virtd.get("server_cpu_ms_per_request"), gate.get("server_cpu_ms_per_request")
        lines.append(
            f"| {level} | {fmt(virtd['requests_per_second'], ',.0f')} | {fmt(virtd['p50_ms'], '.1f')} / {fmt(virtd['p99_ms'], '.1f')} ms "
            f"| {fmt(gate['requests_per_second'], ',.0f')} | {fmt(gate['p50_ms'], '.1f')} / {fmt(gate['p99_ms'], '.1f')} ms "
            f"| {virtd['failures']} / {gate['failures']} | {virtd.get('retransmissions', 'n/a')} / {gate.get('retransmissions', 'n/a')} "
            f"| {fmt(ratio(gate['requests_per_second'], virtd['requests_per_second']))} "
            f"| {fmt(virtd_cpu)} / {fmt(gate_cpu)} / {fmt(gate.get('client_cpu_ms_per_request'))} ms "
            f"| {fmt(ratio(gate_cpu, virtd_cpu))} |")
    saturation_virtd, saturation_gate = saturation(loadgen)
    best = ratio(saturation_gate, saturation_virtd)
    lines += [
        "",
        f"At saturation (best row of each): fence_virtd {fmt(saturation_virtd, ',.0f')} req/s, Fencegate"
        f" {fmt(saturation_gate, ',.0f')} req/s ({fmt(best, '.2f', '×')}). Fencegate also records every request in its audit log (a"
        " status with the log's next group commit, after its answer; beyond 60 a minute from one guest, as the"
        " count in that guest's summary row, as for every read since cf75ba1); fence_virtd writes nothing. With the"
        " test driver a libvirt call takes microseconds, so",
        " fence_virtd's one-request-at-a-time loop costs it little here; CPU per request decides, and the load",
        f" generator and both servers share {os.cpu_count()} cores. At 32 in flight each guest namespace keeps 8",
        " requests in flight, the gateway's limit of call backs to one address: a request that arrives in the instant",
        " between its predecessor's answer and the end of that call back is dropped, and the load generator sends it again.",
        "",
    ]
    targets.append(("load generator: requests/s at saturation, Fencegate ÷ fence_virtd", "≥ 5", fmt(best),
                    None if best is None else best >= 5))
    return lines + render_loadgen_remote(remote)


def render_loadgen_remote(remote):
    if not remote:
        return []
    virtd, gate = remote["fence_virtd"], remote["fencegate"]
    lines = [
        "Over a remote libvirtd, one request in flight: the same 16 domains in a test-driver world served by a",
        "libvirtd of the benchmark's own, reached over its socket (`test+unix://…`), so that every libvirt read is a",
        "call to the daemon, as on `qemu:///system` (the rows above use the embedded test driver, whose reads are",
        "in-process). libvirtd's CPU per request is the daemon's user + system time over the row ÷ the requests.",
        "",
        "| server | req/s | p50 / p99 | failures | CPU per request: server / libvirtd |",
        "|---|---:|---|---:|---|",
    ]
    for label, row in [("fence_virtd", virtd), ("Fencegate", gate)]:
        lines.append(
            f"| {label} | {fmt(row['requests_per_second'], ',.0f')} | {fmt(row['p50_ms'], '.2f')} / {fmt(row['p99_ms'], '.2f')} ms "
            f"| {row['failures']} | {fmt(row.get('server_cpu_ms_per_request'), '.3f')} / "
            f"{fmt(row.get('libvirtd_cpu_ms_per_request'), '.3f')} ms |")
    lines += [
        "",
        f"Ratios, Fencegate ÷ fence_virtd: p50 {fmt(ratio(gate['p50_ms'], virtd['p50_ms']))}, server CPU"
        f" {fmt(ratio(gate.get('server_cpu_ms_per_request'), virtd.get('server_cpu_ms_per_request')))}, libvirtd's CPU"
        f" {fmt(ratio(gate.get('libvirtd_cpu_ms_per_request'), virtd.get('libvirtd_cpu_ms_per_request')))}.",
        "",
    ]
    return lines


def saturation(loadgen):
    """The best req/s of fence_virtd's rows and of Fencegate's (None where a side has no figure)."""
    def best(label):
        values = [known(row["requests_per_second"]) for (side, _), row in loadgen.items() if side == label]
        values = [value for value in values if value is not None]
        return max(values) if values else None
    return best("fence_virtd"), best("fencegate")


def render_qemu(qemu, targets):
    if not qemu:
        return []
    virtd, gate = qemu["fence_virtd"], qemu["fencegate"]
    lines = [
        "## 2. Real hypervisor (libvirtd, QEMU domains)",
        "",
        f"Five persistent domains of type `qemu` (TCG), 32 MiB, no disk, on {qemu.get('libvirtd', 'libvirtd')}. Five",
        "guest namespaces run the unchanged `fence_xvm -H vmI` at the same moment, each for a different VM; times",
        "are from that moment to each client's exit. The hypervisor's own times come from `virsh` in the same run.",
        "",
        f"- virsh alone: destroy {qemu['destroy_seconds']:.1f} s, start {qemu['start_seconds']:.1f} s. Five at once:"
        f" destroys done after {max(qemu['parallel_destroys']):.1f} s, starts after {seconds_list(qemu['parallel_starts'])} s.",
        "",
        "| | fence_virtd | Fencegate |",
        "|---|---|---|",
        f"| 5 concurrent `off`, done after | {seconds_list(virtd['offs'])} s | {seconds_list(gate['offs'])} s |",
        f"| one `reboot` | {virtd['reboot_seconds']:.1f} s | {gate['reboot_seconds']:.1f} s |",
    ]
    if "reboots" in virtd:
        lines.append(f"| 5 concurrent `reboot`, done after | {seconds_list(virtd['reboots'])} s | {seconds_list(gate['reboots'])} s |")
    else:
        lines.append(f"| 5 concurrent `reboot`, done after | not run (`--skip-virtd-concurrent-reboots`) | {seconds_list(gate['reboots'])} s |")
    failures = virtd["offs_failures"] + virtd["reboot_failures"] + gate["offs_failures"] + gate["reboot_failures"] \
        + gate.get("reboots_failures", 0) + virtd.get("reboots_failures", 0)
    lines += ["", f"Failures (a client's non-zero exit, or a VM in the wrong state afterwards): {failures}.", ""]
    budget = qemu["destroy_seconds"] + qemu["start_seconds"] + 1
    targets += [
        ("5 concurrent offs of 5 VMs, all done", "≤ 3 s", f"{max(gate['offs']):.1f} s (fence_virtd {max(virtd['offs']):.1f} s)",
         max(gate["offs"]) <= 3 and gate["offs_failures"] == 0),
        ("5 concurrent reboots of 5 VMs, all done", f"≤ 2 × one reboot = {2 * gate['reboot_seconds']:.1f} s",
         f"{max(gate['reboots']):.1f} s" + (f" (fence_virtd {max(virtd['reboots']):.1f} s)" if "reboots" in virtd else ""),
         max(gate["reboots"]) <= 2 * gate["reboot_seconds"]),
        ("one reboot", f"≤ destroy + start + 1 s = {budget:.1f} s", f"{gate['reboot_seconds']:.1f} s (fence_virtd {virtd['reboot_seconds']:.1f} s)",
         gate["reboot_seconds"] <= budget),
    ]
    return lines


HTTP_CONNECTIONS = [1, 16, 64]
# (results key prefix, server, request) for every wrk row of section 3, in the order of its last table.
HTTP_ROWS = [
    ("status", "Fencegate", "`GET /domains/node1` (read token)"),
    ("metrics", "Fencegate", "`GET /metrics` (read token)"),
    ("fence_one", "Fencegate", "`POST /domains/node1/off`, `/on` alternating, audited (fence token)"),
    ("fence", "Fencegate", "`POST /domains/nodeI/off`, `/on` over 64 domains, audited (fence token)"),
    ("redfish_status", "Fencegate", "Redfish `GET /redfish/v1/Systems/node1` (HTTP Basic)"),
    ("redfish_reset", "Fencegate", "Redfish Reset ForceOff / On on node1, audited (HTTP Basic)"),
    ("ceiling", "fixed-body C program", "`GET /domains/node1` (any path: the same 120-byte JSON)"),
]
SUSHY_ROWS = [
    ("status", "sushy-emulator", "`GET /redfish/v1/Systems/{uuid}` (its one domain)"),
    ("fence", "sushy-emulator", "Reset ForceOff / On on its one domain, not audited"),
]


def rate(row, digits=0):
    return "– | –" if not row else f"{fmt(row['requests_per_second'], f',.{digits}f')} | {fmt(row.get('p99_ms'), '.2f', ' ms')}"


def cpu_cell(row):
    return "–" if not row else fmt(row.get("server_cpu_ms_per_request"), ".3f", " ms")


def socket_errors(row):
    errors = row.get("socket_errors")
    if not isinstance(errors, dict):
        return "n/a"
    return " / ".join(str(errors.get(kind, 0)) for kind in ("connect", "read", "write", "timeout"))


def render_http(http, sushy, targets):
    if not http:
        return []
    sushy = sushy or {}
    timeout = http.get("wrk_timeout", "?")
    version = f" ({sushy['version'].split(':', 1)[-1].strip()})" if sushy.get("version") else ""
    lines = [
        "## 3. HTTP API",
        "",
        f"wrk on loopback, every row with the same settings (2 threads, 1 at one connection; `--timeout {timeout}` for"
        " every server; a request not answered within it counts as a socket timeout). Fencegate (`serve --redfish"
        " --allow-plain-http`, 64 test-driver domains) answers reads with a read-scope token and `POST"
        " /domains/nodeI/off|on` with a fence-scope token, each such operation with its intent row written and fsynced"
        " before the hypervisor call and its completion committed before the answer (synced with the next intent's"
        " commit, at the latest 200 ms later). Beside it, in the same run: sushy-emulator" + version +
        f" on libvirt's test:///default ({sushy.get('domains', 1)} domain, no authentication, no audit record), and"
        " `bench/mhd-ceiling.c`, a fixed-body libmicrohttpd program with Fencegate's server settings (MHD_USE_AUTO,"
        " internal polling thread, a pool of 2 threads, 127.0.0.1) that answers every request with the same 120-byte"
        " JSON: the library's ceiling on this machine. CPU per request is the server process's user + system time"
        " (all its threads) over the row ÷ the requests wrk counted.",
        "",
        "Like with like, one domain on each side: Fencegate's `GET /domains/node1` and its audited off/on alternating"
        " on node1, beside sushy-emulator's `GET` of its system and its Reset alternating ForceOff and On.",
        "",
        "| connections | Fencegate GET req/s | p99 | sushy GET req/s | p99 | ratio | Fencegate audited off/on, one domain,"
        " ops/s | p99 | sushy Reset ops/s | p99 | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in HTTP_CONNECTIONS:
        status, fence = http.get(f"status_c{connections}"), http.get(f"fence_one_c{connections}")
        other_status, other_fence = sushy.get(f"status_c{connections}"), sushy.get(f"fence_c{connections}")
        lines.append(
            f"| {connections} | {rate(status)} | {rate(other_status)}"
            f" | {fmt(ratio((status or {}).get('requests_per_second'), (other_status or {}).get('requests_per_second')), '.1f', '×')}"
            f" | {rate(fence)} | {rate(other_fence)}"
            f" | {fmt(ratio((fence or {}).get('requests_per_second'), (other_fence or {}).get('requests_per_second')), '.2f', '×')} |")
    lines += [
        "",
        "Against the library's ceiling: the same wrk rows, Fencegate's `GET /domains/node1` and the fixed-body program"
        " one right after the other.",
        "",
        "| connections | Fencegate GET req/s | p99 | CPU per request | C program req/s | p99 | CPU per request"
        " | ratio req/s, Fencegate ÷ C | ratio CPU per request, Fencegate ÷ C |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in HTTP_CONNECTIONS:
        status, ceiling = http.get(f"status_c{connections}"), http.get(f"ceiling_c{connections}")
        lines.append(
            f"| {connections} | {rate(status)} | {cpu_cell(status)} | {rate(ceiling)} | {cpu_cell(ceiling)}"
            f" | {fmt(ratio((status or {}).get('requests_per_second'), (ceiling or {}).get('requests_per_second')))}"
            f" | {fmt(ratio((status or {}).get('server_cpu_ms_per_request'), (ceiling or {}).get('server_cpu_ms_per_request')), '.1f')} |")
    if "redfish_status_c1" in http:
        lines += [
            "",
            "Redfish against Redfish: Fencegate's `/redfish/v1` (HTTP Basic with a token checked on every request,"
            " every Reset audited) and sushy-emulator (no authentication, no audit), the same requests on one domain:"
            " `GET /redfish/v1/Systems/{id}`, and Reset alternating ForceOff and On. With one connection a Fencegate"
            " Reset waits for one fsync (its intent row; its completion is committed without one and synced with the next"
            " intent's), which sushy-emulator does not write; concurrent Resets share commits.",
            "",
            "| connections | Fencegate GET system req/s | p99 | sushy req/s | p99 | Fencegate Reset ops/s | p99 | sushy ops/s | p99 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for connections in HTTP_CONNECTIONS:
            lines.append(
                f"| {connections} | {rate(http.get(f'redfish_status_c{connections}'))}"
                f" | {rate(sushy.get(f'status_c{connections}'))} | {rate(http.get(f'redfish_reset_c{connections}'))}"
                f" | {rate(sushy.get(f'fence_c{connections}'))} |")
    lines += [
        "",
        "Every wrk row of this section, each server's errors beside it: answers other than 2xx or 3xx, and wrk's"
        " socket errors (connect / read / write / timeout).",
        "",
        "| server | request | connections | req/s | p99 | CPU per request | non-2xx | socket errors c / r / w / t |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    totals = {}
    for source, rows in [(http, HTTP_ROWS), (sushy, SUSHY_ROWS)]:
        for key, server, request in rows:
            for connections in HTTP_CONNECTIONS:
                row = source.get(f"{key}_c{connections}")
                if not row:
                    continue
                lines.append(f"| {server} | {request} | {connections} | {rate(row)} | {cpu_cell(row)} | {row['non_2xx']:,}"
                             f" | {socket_errors(row)} |")
                total = totals.setdefault(server, [0, 0])
                total[0] += row["non_2xx"]
                total[1] += sum((row.get("socket_errors") or {}).values()) if isinstance(row.get("socket_errors"), dict) else 0
    lines += [
        "",
        "In all rows: " + "; ".join(f"{server} {non_2xx:,} non-2xx and {errors:,} socket errors"
                                    for server, (non_2xx, errors) in totals.items()) + ".",
        f"Audit rows written during the run: {http['audit_rows']:,}. This disk sustains {http['fsync_per_second']:,.0f}"
        " fsyncs/s (one writer, measured in the same run). Each audited operation waits for one fsync (its intent row,"
        " `synchronous=FULL`; its completion is committed without one and synced with the next); concurrent"
        " operations share a commit (group commit), so the audited rate is not bounded by one fsync per operation.",
        "",
    ]
    best_status = max(http[f"status_c{c}"]["requests_per_second"] for c in HTTP_CONNECTIONS)
    best_fence = max(http[f"fence_c{c}"]["requests_per_second"] for c in HTTP_CONNECTIONS)
    targets += [
        ("HTTP GET status", "≥ 10,000 req/s", f"{best_status:,.0f} req/s", best_status >= 10_000),
        ("HTTP audited fence ops", "≥ 1,000 ops/s", f"{best_fence:,.0f} ops/s", best_fence >= 1_000),
    ]
    if sushy:
        at16 = ratio(http["status_c16"]["requests_per_second"], sushy["status_c16"]["requests_per_second"])
        targets.append(("HTTP GET, Fencegate ÷ sushy-emulator at 16 connections", "≥ 30", fmt(at16, ".0f"),
                        None if at16 is None else at16 >= 30))
    return lines


def met_all(values, test):
    """True if every value passes `test`, None if one is missing, else False."""
    if any(value is None for value in values):
        return None
    return all(test(value) for value in values)


PEAK_TARGET = "hot path (issue 17): peak RSS under the whole bench"


def peak_target(peaks_mib):
    """The whole-bench peak RSS row from {scenario: MiB}."""
    peak = max(peaks_mib.values())
    measured = f"{peak:.1f} MiB (" + ", ".join(f"{scenario} {value:.1f}" for scenario, value in peaks_mib.items()) + " MiB)"
    return PEAK_TARGET, "≤ 64 MiB", measured, peak <= 64


def issue17_targets(results):
    """Issue 17's targets (the hot path), each from this run's figures where its scenarios ran."""
    rows = []
    loadgen, concurrent = results.get("loadgen"), results.get("concurrent")
    http, sushy = results.get("http"), results.get("sushy")
    if loadgen:
        levels = sorted({level for (_, level) in loadgen})
        cpu = [ratio(loadgen[("fencegate", level)].get("server_cpu_ms_per_request"),
                     loadgen[("fence_virtd", level)].get("server_cpu_ms_per_request")) for level in levels]
        rows.append((f"hot path (issue 17): load generator, server CPU per request, Fencegate ÷ fence_virtd, at"
                     f" {' / '.join(map(str, levels))} in flight", "≤ 0.5 at each", " / ".join(fmt(value) for value in cpu),
                     met_all(cpu, lambda value: value <= 0.5)))
        if 1 in levels:
            p50 = ratio(loadgen[("fencegate", 1)]["p50_ms"], loadgen[("fence_virtd", 1)]["p50_ms"])
            rows.append(("hot path (issue 17): load generator, 1 in flight: p50 latency, Fencegate ÷ fence_virtd", "≤ 1.0",
                         fmt(p50), met_all([p50], lambda value: value <= 1.0)))
        virtd, gate = saturation(loadgen)
        best = ratio(gate, virtd)
        rows.append(("hot path (issue 17): load generator at saturation (best row of each): req/s, Fencegate ÷ fence_virtd",
                     "≥ 2", fmt(best), met_all([best], lambda value: value >= 2)))
    if concurrent:
        what = "hot path (issue 17): 50 guests, unchanged fence_xvm: p99 above floor, Fencegate ÷ fence_virtd"
        if ("fencegate", 50) not in concurrent:
            rows.append((what, "≤ 0.5", "n/a (no N = 50 in this run)", None))
        else:
            value = above_floor(concurrent, 50)[2]
            measured = fmt(value) if p99(concurrent[("fencegate", 50)]) is not None \
                else f"n/a (<{P99_MINIMUM_SAMPLES} samples)"
            rows.append((what, "≤ 0.5", measured, met_all([value], lambda number: number <= 0.5)))
    if http and sushy and "fence_one_c1" in http:
        value = ratio(http["fence_one_c1"]["requests_per_second"], sushy["fence_c1"]["requests_per_second"])
        rows.append(("hot path (issue 17): HTTP audited off/on (one domain), 1 connection: Fencegate ÷ sushy-emulator's"
                     " unaudited Reset", "≥ 1.0", fmt(value), met_all([value], lambda number: number >= 1.0)))
    if http and "ceiling_c1" in http:
        values = [ratio(http[f"status_c{c}"]["requests_per_second"], http[f"ceiling_c{c}"]["requests_per_second"])
                  for c in HTTP_CONNECTIONS]
        rows.append(("hot path (issue 17): HTTP `GET /domains/{d}` (read token) ÷ the fixed-body libmicrohttpd program,"
                     f" at {' / '.join(map(str, HTTP_CONNECTIONS))} connections", "≥ 0.3 at each",
                     " / ".join(fmt(value) for value in values), met_all(values, lambda number: number >= 0.3)))
    if http:
        idle = http["idle_rss_kib"] / 1024
        rows.append(("hot path (issue 17): idle RSS", "≤ 30 MiB", f"{idle:.1f} MiB", idle <= 30))
    peaks = results.get("peak_rss_kib") or {}
    if peaks:
        rows.append(peak_target({scenario: kib / 1024 for scenario, kib in peaks.items()}))
    return rows


def render_audit(audit, targets):
    if not audit:
        return []
    lines = [
        "## 4. Audit log at scale",
        "",
        f"{audit['rows']:,} rows inserted ({audit['insert_rows_per_second']:,.0f} rows/s in batches), then 200 queries",
        "of each kind through the store's API: the first page (50 rows) and the next nine pages by cursor.",
        "",
        "| query | first page p50 / p99 | next pages p50 / p99 |",
        "|---|---|---|",
    ]
    worst = 0.0
    for name in ["by_domain", "by_domain_and_action", "by_time_range", "by_result", "unfiltered"]:
        entry = audit[name]
        first, later = entry["first_page_ms"], entry["next_pages_ms"]
        worst = max(worst, first["p99"], later["p99"])
        lines.append(
            f"| {name.replace('_', ' ')} | {first['p50']:.2f} / {first['p99']:.2f} ms "
            f"| {later['p50']:.2f} / {later['p99']:.2f} ms |")
    lines += ["", f"Database size: {audit['database_bytes'] / 2**20:,.0f} MiB"
              f" ({audit['database_bytes'] / audit['rows']:.0f} bytes per row, indexes included).", ""]
    targets.append((f"audit page query at {audit['rows']:,} rows, p99", "≤ 10 ms", f"{worst:.2f} ms", worst <= 10))
    return lines


def render_footprint(http):
    if not http:
        return []
    return [
        "## 5. Footprint",
        "",
        f"- Start-up to ready (`fencegate serve` until it prints its address): {http['startup_seconds'] * 1000:.0f} ms.",
        f"- RSS idle: {http['idle_rss_kib'] / 1024:.1f} MiB; under the HTTP load of section 3 (sampled after each row):"
        f" {http['loaded_rss_kib'] / 1024:.1f} MiB"
        + (f"; its peak (VmHWM) over section 3: {http['peak_rss_kib'] / 1024:.1f} MiB." if "peak_rss_kib" in http else "."),
        "",
    ]


SOAK_KINDS = [
    ("rest_get", "REST `GET /domains/{d}` (read token)"),
    ("rest_fence", "REST `POST /domains/{d}/off` and `/on`, audited (fence token)"),
    ("redfish_get", "Redfish `GET /redfish/v1/Systems/{uuid}` (HTTP Basic)"),
    ("redfish_reset", "Redfish `POST …/Actions/ComputerSystem.Reset` ForceOff / On, audited"),
    ("xvm_status", "fence_xvm `status` (load generator, multicast and call back, audited)"),
]


def render_soak(soak, targets):
    if not soak:
        return []
    warm, end, settled = soak["warmup"], soak["end"], soak["settled"]
    growth = soak["growth_kib"] / 1024
    connections = soak.get("connections", {})
    lines = [
        "## 6. Soak",
        "",
        f"One Fencegate serves every front end at once in the lab's host namespace ({soak['domains']} test-driver"
        " domains; HTTP and Redfish on its loopback, fence_xvm multicast on br0) while wrk and the load generator run",
        f"together in phases of {soak['phase_seconds']} s until {soak['target_requests']:,} requests are answered. RSS is"
        " read after each phase; the growth is from the end of the phase that passed"
        f" {soak['warmup_requests']:,} requests (the warm-up) to the end.",
        "",
        "| kind | in flight | requests | errors |",
        "|---|---:|---:|---:|",
    ]
    for kind, label in SOAK_KINDS:
        in_flight = connections.get(kind, soak.get("xvm_in_flight") if kind == "xvm_status" else "")
        lines.append(f"| {label} | {in_flight} | {soak['counts'].get(kind, 0):,} | {soak['errors'].get(kind, 0):,} |")
    lines.append(f"| all | | {soak['requests']:,} | {sum(soak['errors'].values()):,} |")
    lines += [
        "",
        f"- Duration: {soak['seconds']:.0f} s ({soak['requests'] / soak['seconds']:,.0f} requests/s);"
        f" audit rows written: {soak['audit_rows']:,}; load average (1 min) {soak['loadavg_start'][0]:.1f} at the start,"
        f" {soak['loadavg_end'][0]:.1f} at the end.",
        f"- RSS after the warm-up ({warm['requests']:,} requests): {warm['rss_kib'] / 1024:.1f} MiB; at the end"
        f" ({end['requests']:,} requests): {end['rss_kib'] / 1024:.1f} MiB; growth {growth:+.1f} MiB;"
        f" 10 s after the load: {settled['rss_kib'] / 1024:.1f} MiB.",
        *([f"- Of that growth, anonymous memory (heap, thread stacks): {(end['anon_kib'] - warm['anon_kib']) / 1024:+.1f} MiB"
           f" ({warm['anon_kib'] / 1024:.1f} → {end['anon_kib'] / 1024:.1f} MiB); file-backed pages (code and data of the"
           f" binary and its libraries, mapped as they are first used): {(end['file_kib'] - warm['file_kib']) / 1024:+.1f} MiB"
           f" ({warm['file_kib'] / 1024:.1f} → {end['file_kib'] / 1024:.1f} MiB)."] if "anon_kib" in warm else []),
        f"- Threads {warm['threads']} → {end['threads']} → {settled['threads']}, open descriptors"
        f" {warm['fds']} → {end['fds']} → {settled['fds']} (after the warm-up, at the end, 10 s later).",
        "- RSS after each phase (MiB): " + ", ".join(f"{phase['rss_kib'] / 1024:.0f}" for phase in soak["phases"]) + ".",
    ]
    if soak.get("error_notes"):
        lines.append("- Errors: " + "; ".join(soak["error_notes"][:5]) + ".")
    lines.append("")
    targets.append((f"soak: RSS growth after the warm-up, over {soak['requests'] - warm['requests']:,} more requests",
                    "≤ 5 MiB", f"{growth:+.1f} MiB" + (f" (only {soak['requests']:,} of {soak['target_requests']:,} requests"
                                                      " within the time budget)" if soak["requests"] < soak["target_requests"] else ""),
                    growth <= 5 and soak["requests"] >= soak["target_requests"]))
    return lines


CLUSTER_CASES = [
    ("baseline", "baseline: host1 without `--cluster`, `POST /domains/h1-vm1/on`", "host1"),
    ("baseline_busy", "the same, while a bare CPG client on host3 multicasts one message every 5 ms", "host1"),
    ("here", "(a) `--cluster`, `POST /domains/h1-vm1/on`", "host1, decided through the group"),
    ("forwarded", "(b) `--cluster`, `POST /domains/h2-vm1/on`", "host2, forwarded and answered back"),
    ("read_baseline", "read: host1 without `--cluster`, `GET /domains/h1-vm1`", "host1 (libvirt)"),
    ("read_cluster", "read: `--cluster`, `GET /domains/h2-vm1`", "host1, from host2's report"),
]


def render_cluster(cluster, targets):
    if not cluster:
        return []
    http, floor, xvm = cluster["http"], cluster["cpg_floor"], cluster["xvm"]
    base = http["baseline"]
    count = base["answered"]
    lines = [
        "## 7. Cluster mode (three corosync hosts)",
        "",
        f"Three hosts, each a network namespace on one bridge with its own corosync ({cluster['corosync']}; knet,"
        f" votequorum, totem {', '.join(cluster.get('totem') or ['token: 1000'])}; README's example is token: 1000,"
        " seqno_unchanged_const: 2) and `fencegate serve --cluster` on a test-driver world of",
        f"its own (host1: h1-vm1…, host2: h2-vm1…, host3: h3-vm1…), built as the test suite's cluster lab; all three hosts"
        f" and their corosyncs share this machine's {os.cpu_count()} cores. host1 knew every host's domains"
        f" {cluster['known_after_seconds']:.1f} s after the servers started. The scenario took {cluster['seconds']:.0f} s;"
        f" other processes on the machine used {cluster['others_cpu_share']:.0%} of its CPU meanwhile (load average,"
        f" 1 min: {cluster['loadavg_start'][0]:.1f} at the start, {cluster['loadavg_end'][0]:.1f} at the end).",
        "",
        f"HTTP: one persistent connection from host1's namespace (Python http.client), {count:,} sequential requests"
        " per row, in 4 rounds that take turns between the rows, after a warm-up. `POST …/on` of a running domain",
        "takes a fence's whole path (two audit rows, the group, the executor's libvirt call) and changes nothing (the",
        "REST API has no POST for status; fence_xvm's status is below). The baseline is a second Fencegate on host1,",
        "without `--cluster`, on the same world, idle while the cluster is measured and the other way round.",
        "",
        "| request to host1 | executed on | p50 / p90 / p99 | added to the baseline, p50 / p99 | CPU per request:"
        " host1's Fencegate / host2's and host3's / the three corosyncs |",
        "|---|---|---|---|---|",
    ]
    for case, label, where in CLUSTER_CASES:
        entry = http[case]
        reference = http["read_baseline" if case.startswith("read") else "baseline"]
        added = "–" if case in ("baseline", "read_baseline") else \
            f"{entry['p50_ms'] - reference['p50_ms']:+.2f} / {entry['p99_ms'] - reference['p99_ms']:+.2f} ms"
        failures = sum(entry["failures"].values())
        lines.append(
            f"| {label} | {where} | {entry['p50_ms']:.2f} / {entry['p90_ms']:.2f} / {entry['p99_ms']:.2f} ms"
            + (f" ({failures} failed)" if failures else "")
            + f" | {added} | {entry['cpu_receiver_ms']:.2f} / {entry['cpu_other_hosts_ms']:.2f}"
            f" / {entry['cpu_corosync_ms']:.2f} ms |")
    here, forwarded = http["here"], http["forwarded"]

    def mean(value):
        return "–" if value is None else f"{value:.2f} ms"
    lines += [
        "",
        "Where a request's time goes (means over the same requests, from the servers' own metrics: host1's"
        " `fencegate_operation_duration_seconds` and, of it, `fencegate_cluster_forwarded_duration_seconds`, from"
        " sending to the group until decided here or answered by the executor; host2's operation for the forwarded"
        " requests), beside corosync's own floor measured below:",
        "",
        "| | host1's operation | of it, in the group | host2's operation (executor) |",
        "|---|---|---|---|",
        f"| baseline | {mean(base['receiver_operation_ms'])} | – | – |",
        f"| baseline, corosync busy | {mean(http['baseline_busy']['receiver_operation_ms'])} | – | – |",
        f"| (a) decided here | {mean(here['receiver_operation_ms'])} | {mean(here['receiver_group_ms'])} | – |",
        f"| (b) forwarded to host2 | {mean(forwarded['receiver_operation_ms'])} | {mean(forwarded['receiver_group_ms'])}"
        f" | {mean(forwarded['executor_operation_ms'])} |",
        "",
        "corosync's floor: a bare libcpg client (Python ctypes, CPG_TYPE_AGREED as Fencegate sends) on host1 multicasts",
        "one message and waits for its delivery back (what a request decided on its own host waits for), or for the",
        "answer of the same client on host2 (two messages, as a forwarded request), back to back or 20 ms apart",
        f"({floor['self 0']['answered']:,} each). corosync's CPU is the three corosyncs' together, per message sent by host1.",
        "",
        "| bare CPG client | back to back: p50 / p90 / p99 | corosync CPU | 20 ms apart: p50 / p90 / p99 | corosync CPU |",
        "|---|---|---|---|---|",
    ]
    for kind, label in [("self", "host1 → host1 (1 message)"), ("echo", "host1 → host2 → host1 (2 messages)")]:
        near, apart = floor[f"{kind} 0"], floor[f"{kind} 0.02"]
        lines.append(
            f"| {label} | {near['p50_ms']:.2f} / {near['p90_ms']:.2f} / {near['p99_ms']:.2f} ms | {near['cpu_corosync_ms']:.2f} ms"
            f" | {apart['p50_ms']:.2f} / {apart['p90_ms']:.2f} / {apart['p99_ms']:.2f} ms | {apart['cpu_corosync_ms']:.2f} ms |")
    levels = sorted(xvm["fencegate"])
    lines += [
        "",
        "fence_xvm: `fencegate-bench xvm-load` in a fourth namespace on the same bridge multicasts signed `status`",
        "requests (domains in turn: of the cluster, h1-vm1, h2-vm1, h3-vm1; alone, h1-vm1…h1-vm3), back to back with",
        "1 or 8 in flight. The cluster's three hosts all hear each request; each claims the call back through the",
        "group, the first claim delivered calls back, and the request is then decided through the group and executed",
        "on the domain's host. Alone: one server on host1 without `--cluster`, fence_virtd (its own pid file, libvirt",
        "backend) or Fencegate. Server CPU: the server's; for the cluster, the three Fencegates' and corosyncs'.",
        "",
        "| server | in flight | req/s | p50 / p90 / p99 | failures | retransmissions | server CPU per request |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for label, title in [("fence_virtd", "fence_virtd alone on host1"), ("fencegate", "Fencegate alone on host1"),
                         ("fencegate_cluster", "Fencegate on the three hosts (`--cluster`)")]:
        for level in levels:
            row = xvm[label][level]
            lines.append(
                f"| {title} | {level} | {row['requests_per_second']:,.0f} | {fmt(row['p50_ms'])} / {fmt(row['p90_ms'])} /"
                f" {fmt(row['p99_ms'])} ms | {row['failures']} | {row['retransmissions']} |"
                f" {fmt(row['server_cpu_ms_per_request'])} ms |")
    callbacks = cluster["xvm_callbacks_per_host"]
    total = sum(callbacks) or 1
    virtd = cluster["virtd_cpg"]
    lines += [
        "",
        "Called back by (the cluster's rows together): " + ", ".join(
            f"host{index + 1} {value / total:.0%}" for index, value in enumerate(callbacks)) + ".",
        "",
        f"fence_virtd's own `cpg` backend is left out of the latency rows: on the same three hosts (one fence_virtd"
        f" each, its own pid file and configuration), {virtd['checks']} fence_xvm `status` calls (`-t 5`) for running"
        f" domains of each host in turn, one after the other, answered on {virtd['right']} times, off {virtd['off']}"
        f" times (wrong: the domain runs) and failed {virtd['failed']} times. Every fence_virtd that hears the"
        " multicast calls back; a host that does not know the domain answers it off (\"unknown domain\" in its debug",
        "log) and the host that has it waits for a reply that does not come (see ../shared/docs/corosync-lab.md).",
        "",
    ]
    for case, what in [("here", "a request decided on its own host"), ("forwarded", "a request forwarded to another host")]:
        added_p50 = http[case]["p50_ms"] - base["p50_ms"]
        added_p99 = http[case]["p99_ms"] - base["p99_ms"]
        targets.append((f"cluster: latency added to {what}, p50 / p99", "≤ 2 ms",
                        f"{added_p50:.1f} / {added_p99:.1f} ms", added_p50 <= 2 and added_p99 <= 2))
    return lines


def sections(text):
    """The report cut at each `## ` heading: [(heading or None for the header, text with the heading)]."""
    parts, current, lines = [], None, []
    for line in text.split("\n"):
        if line.startswith("## "):
            parts.append((current, lines))
            current, lines = line, []
        lines.append(line)
    parts.append((current, lines))
    return [(heading, "\n".join(lines).rstrip("\n") + "\n\n") for heading, lines in parts]


def figureless(label):
    """A target row's label with its figures blanked, to match a row measured again."""
    return re.sub(r"\d[\d,.]*", "#", label)


def merge(existing, results):
    """`existing` (an earlier report) with this partial run's scenario sections replaced or added, their rows
    under Targets replaced or added (the whole-bench peak RSS recomputed from every section's), and the profile
    notes refreshed; every other figure is kept as it was.
    Each replaced section says that it was measured separately, when and by which command; the header lists
    those sections."""
    fresh = sections(render(results))
    merged = sections(existing)
    numbered = re.compile(r"## (\d+b?)\. ")

    def key(heading):
        if heading is None:
            return None
        match = numbered.match(heading)
        return match.group(1) if match else heading.split(":")[0]

    provenance = (f"Measured separately from the rest of this file: {results['date']} on {results['machine']}, by"
                  f" `{results['command']}` (as root), Fencegate {results['versions'].get('fencegate', '?')}.")
    for heading, text in fresh:
        if heading is None or heading == "## Targets":
            continue
        if numbered.match(heading):
            head, _, body = text.partition("\n\n")
            text = f"{head}\n\n{provenance}\n\n{body}"
        position = next((index for index, (old, _) in enumerate(merged) if key(old) == key(heading)), None)
        if position is not None:
            merged[position] = (heading, text)
        else:
            before = next((index for index, (old, _) in enumerate(merged)
                           if old in ("## Targets",) or (old or "").startswith("## Profile notes")), len(merged))
            merged.insert(before, (heading, text))
    new_targets = dict(fresh).get("## Targets")
    old_targets = next((index for index, (old, _) in enumerate(merged) if old == "## Targets"), None)
    if new_targets and old_targets is not None:
        lines = merged[old_targets][1].rstrip("\n").split("\n")
        for row in (line for line in new_targets.split("\n") if line.startswith("| ") and not line.startswith("| what")):
            what = row.split(" | ")[0]
            rows = [index for index, line in enumerate(lines) if line.startswith("| ")]
            # The same row whatever figures its label holds (the soak's request count, say).
            same = [index for index in rows if figureless(lines[index].split(" | ")[0]) == figureless(what)]
            if same:
                lines[same[0]] = row
            else:
                lines.insert(rows[-1] + 1, row)
        merged[old_targets] = ("## Targets", "\n".join(lines) + "\n\n")
    # The whole-bench peak RSS: the highest of every section's, those kept and those measured now.
    old_targets = next((index for index, (old, _) in enumerate(merged) if old == "## Targets"), None)
    sections_scenario = {number: scenario for scenario, number in SCENARIO_SECTIONS.items()}
    peaks = {}
    for heading, text in merged:
        found = re.search(re.escape(PEAK_LINE) + r"[^:]*: ([\d.]+) MiB", text)
        if heading and found and numbered.match(heading):
            peaks[sections_scenario.get(key(heading), key(heading))] = float(found.group(1))
    if peaks and old_targets is not None:
        what, target, measured, met = peak_target(peaks)
        row = f"| {what} | {target} | {measured} | {'yes' if met else '**no**'} |"
        lines = merged[old_targets][1].rstrip("\n").split("\n")
        same = [index for index, line in enumerate(lines) if line.startswith(f"| {what} |")]
        if same:
            lines[same[0]] = row
        else:
            lines.insert(max(index for index, line in enumerate(lines) if line.startswith("| ")) + 1, row)
        merged[old_targets] = ("## Targets", "\n".join(lines) + "\n\n")
    # The header: this version's scenario sentence, and which sections were measured separately.
    header = merged[0][1]
    header = re.sub(r"scenario \([a-z, ]+\) for a quick look[^\n]*", lambda _: SCENARIO_SENTENCE, header, count=1)
    header = re.sub(r"\nSections measured separately[^\n]*\n(?:[^\n]+\n)*", "\n", header)
    separate = [heading[3:].split(" ", 1)[0].rstrip(".") for heading, text in merged
                if heading and "Measured separately from the rest of this file" in text]
    if separate:
        header = header.rstrip("\n") + "\n\nSections measured separately, by `bench/run --only NAME --merge` (each says" \
            f" when and by which command under its title): {', '.join(separate)}. Every other figure comes from the" \
            " run above.\n\n"
    merged[0] = (None, header)
    return "".join(text for _, text in merged).rstrip("\n") + "\n"
