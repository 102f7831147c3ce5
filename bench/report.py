"""Renders bench.py's results as BENCHMARKS.md: the figures of one run, the targets, and the profile notes."""
import os

NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile-notes.md")
SCENARIO_SENTENCE = ("scenario (concurrent, loadgen, qemu, http, audit, soak, cluster) for a quick look, and with `--merge` replaces"
                     " only that scenario's section (and its rows under Targets) in this file, keeping the rest.")


def ms(value):
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


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
    lines += render_concurrent(results.get("concurrent"), targets)
    lines += render_loadgen(results.get("loadgen"), targets)
    lines += render_qemu(results.get("qemu"), targets)
    lines += render_http(results.get("http"), results.get("sushy"), targets)
    lines += render_audit(results.get("audit"), targets)
    lines += render_footprint(results.get("http"))
    lines += render_soak(results.get("soak"), targets)
    lines += render_cluster(results.get("cluster"), targets)
    if targets:
        lines += ["## Targets", "", "| what | target | measured | met |", "|---|---|---|---|"]
        for what, target, measured, met in targets:
            lines.append(f"| {what} | {target} | {measured} | {'yes' if met else '**no**'} |")
        lines += ["", "Where a target is missed, the profile notes below give the cause.", ""]
    if os.path.exists(NOTES):
        with open(NOTES) as file:
            lines += [file.read().rstrip(), ""]
    return "\n".join(lines)


def render_concurrent(concurrent, targets):
    if not concurrent:
        return []
    counts = sorted({count for (_, count) in concurrent})
    lines = [
        "## 1. Concurrent guests (the unchanged fence_xvm)",
        "",
        "N guest namespaces each run `fence_xvm -o status -H nodeI` at the same moment (several rounds); latency is",
        "each client process's wall time. The floor is the same processes running `fence_xvm -o metadata`, which",
        "sends nothing: process start-up and CPU contention on the machine's cores. Client CPU is the mean CPU time",
        "of one fence_xvm process (user + system, from its rusage).",
        "",
        "| N | floor p50 / p99 | fence_virtd p50 / p99 / max | Fencegate p50 / p99 / max | failures (virtd / gate) "
        "| client CPU: floor / status | p99 above floor: virtd / gate | ratio gate ÷ virtd |",
        "|---:|---|---|---|---|---|---|---:|",
    ]
    last = None
    for count in counts:
        floor = concurrent[("floor", count)]
        virtd = concurrent[("fence_virtd", count)]
        gate = concurrent[("fencegate", count)]
        above_virtd = virtd["p99_ms"] - floor["p99_ms"]
        above_gate = max(gate["p99_ms"] - floor["p99_ms"], 0)
        ratio = above_gate / above_virtd if above_virtd > 0 else float("nan")
        lines.append(
            f"| {count} | {ms(floor['p50_ms'])} / {ms(floor['p99_ms'])} ms "
            f"| {ms(virtd['p50_ms'])} / {ms(virtd['p99_ms'])} / {ms(virtd['max_ms'])} ms "
            f"| {ms(gate['p50_ms'])} / {ms(gate['p99_ms'])} / {ms(gate['max_ms'])} ms "
            f"| {virtd['failures']} / {gate['failures']} "
            f"| {floor.get('client_cpu_ms', 0):.1f} / {gate.get('client_cpu_ms', 0):.1f} ms "
            f"| {ms(above_virtd)} / {ms(above_gate)} ms | {ratio:.2f} |")
        last = (count, floor, virtd, gate, above_virtd, above_gate, ratio)
    count, floor, virtd, gate, above_virtd, above_gate, ratio = last
    cores = os.cpu_count() or 1
    client_extra = count * (gate.get("client_cpu_ms", 0) - floor.get("client_cpu_ms", 0)) / cores
    lines += [
        "",
        f"At N = {count}, the clients themselves need {gate.get('client_cpu_ms', 0) - floor.get('client_cpu_ms', 0):.1f} ms"
        f" of CPU each beyond the floor (TCP listener, challenge-response, hashing): {count} × that ÷ {cores} cores ="
        f" {client_extra:.0f} ms of wall time above the floor that no server can remove, against fence_virtd's"
        f" {above_virtd:.0f} ms.",
        "",
    ]
    targets.append((f"{count} guests: p99 above floor, Fencegate ÷ fence_virtd", "≤ 0.20", f"{ratio:.2f}", ratio <= 0.20))
    return lines


def render_loadgen(loadgen, targets):
    if not loadgen:
        return []
    levels = sorted({level for (_, level) in loadgen})
    lines = [
        "## 1b. Load generator (no process per request)",
        "",
        "`fencegate-bench xvm-load` (a client written from the protocol document: it signs each request, multicasts",
        "it from its guest namespace, takes the call back on its own listener and runs the client's half of the",
        "challenge-response) keeps a fixed number of `status` requests in flight from 4 guest namespaces, over 16",
        "domains, back to back. Both servers share the machine's cores with the load generator.",
        "",
        "| in flight | fence_virtd req/s | p50 / p99 | Fencegate req/s | p50 / p99 | failures (virtd / gate) | ratio req/s "
        "| CPU per request: virtd / gate / load generator |",
        "|---:|---:|---|---:|---|---|---:|---|",
    ]
    best = 0.0
    for level in levels:
        virtd, gate = loadgen[("fence_virtd", level)], loadgen[("fencegate", level)]
        ratio = gate["requests_per_second"] / virtd["requests_per_second"] if virtd["requests_per_second"] else float("nan")
        best = max(best, ratio)
        lines.append(
            f"| {level} | {virtd['requests_per_second']:,.0f} | {virtd['p50_ms']:.1f} / {virtd['p99_ms']:.1f} ms "
            f"| {gate['requests_per_second']:,.0f} | {gate['p50_ms']:.1f} / {gate['p99_ms']:.1f} ms "
            f"| {virtd['failures']} / {gate['failures']} | {ratio:.2f} "
            f"| {virtd.get('server_cpu_ms_per_request', float('nan')):.2f} / {gate.get('server_cpu_ms_per_request', float('nan')):.2f}"
            f" / {gate.get('client_cpu_ms_per_request', float('nan')):.2f} ms |")
    saturation_virtd = max(loadgen[("fence_virtd", level)]["requests_per_second"] for level in levels)
    saturation_gate = max(loadgen[("fencegate", level)]["requests_per_second"] for level in levels)
    ratio = saturation_gate / saturation_virtd if saturation_virtd else float("nan")
    lines += [
        "",
        f"At saturation (best row of each): fence_virtd {saturation_virtd:,.0f} req/s, Fencegate {saturation_gate:,.0f}"
        f" req/s ({ratio:.2f}×). Every Fencegate request also writes and fsyncs its audit row before and after the"
        " libvirt call; fence_virtd writes nothing. With the test driver a libvirt call takes microseconds, so",
        " fence_virtd's one-request-at-a-time loop costs it little here; CPU per request decides, and the load",
        f" generator and both servers share {os.cpu_count()} cores.",
        "",
    ]
    targets.append(("load generator: requests/s at saturation, Fencegate ÷ fence_virtd", "≥ 5", f"{ratio:.2f}", ratio >= 5))
    return lines


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


def render_http(http, sushy, targets):
    if not http:
        return []
    lines = [
        "## 3. HTTP API",
        "",
        "wrk on loopback with a fence-scope token. `GET /domains/node1` reads the live state; `POST /domains/nodeI/off|on`",
        "alternates over 64 domains, each operation with its intent row written and fsynced before the hypervisor",
        "call and its completion after. Beside it, sushy-emulator"
        + (f" ({sushy['version'].split(':', 1)[-1].strip()})" if sushy else "")
        + " on the same test driver: `GET /redfish/v1/Systems/{uuid}` and `POST …/Actions/ComputerSystem.Reset`",
        "alternating ForceOff and On on its one domain (no audit record).",
        "",
        "| connections | Fencegate GET req/s | p99 | sushy GET req/s | p99 | ratio | Fencegate audited off/on ops/s | p99 | sushy Reset ops/s | p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for connections in [1, 16, 64]:
        status, fence = http[f"status_c{connections}"], http[f"fence_c{connections}"]
        if sushy:
            other_status, other_fence = sushy[f"status_c{connections}"], sushy[f"fence_c{connections}"]
            ratio = status["requests_per_second"] / other_status["requests_per_second"]
            ratios.append((connections, ratio))
            lines.append(
                f"| {connections} | {status['requests_per_second']:,.0f} | {status['p99_ms']:.2f} ms "
                f"| {other_status['requests_per_second']:,.0f} | {other_status['p99_ms']:.1f} ms | {ratio:.0f}× "
                f"| {fence['requests_per_second']:,.0f} | {fence['p99_ms']:.2f} ms "
                f"| {other_fence['requests_per_second']:,.0f} | {other_fence['p99_ms']:.1f} ms |")
        else:
            lines.append(
                f"| {connections} | {status['requests_per_second']:,.0f} | {status['p99_ms']:.2f} ms | – | – | – "
                f"| {fence['requests_per_second']:,.0f} | {fence['p99_ms']:.2f} ms | – | – |")
    if "redfish_status_c1" in http:
        lines += [
            "",
            "Redfish against Redfish: Fencegate's `/redfish/v1` (`serve --redfish`, HTTP Basic with a token checked on",
            "every request, every Reset audited) and sushy-emulator (no authentication, no audit), the same requests",
            "on one domain: `GET /redfish/v1/Systems/{id}`, and Reset alternating ForceOff and On. With one connection a",
            "Fencegate Reset waits for two fsyncs (its audit rows), which sushy-emulator does not write; concurrent",
            "Resets share commits.",
            "",
            "| connections | Fencegate GET system req/s | p99 | sushy req/s | p99 | Fencegate Reset ops/s | p99 | sushy ops/s | p99 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for connections in [1, 16, 64]:
            mine_status, mine_reset = http[f"redfish_status_c{connections}"], http[f"redfish_reset_c{connections}"]
            other = sushy or {}
            other_status, other_reset = other.get(f"status_c{connections}"), other.get(f"fence_c{connections}")
            def cell(result, digits):
                return f"{result['requests_per_second']:,.0f} | {result['p99_ms']:.{digits}f} ms" if result else "– | –"
            lines.append(
                f"| {connections} | {cell(mine_status, 2)} | {cell(other_status, 1)} | {cell(mine_reset, 2)} | {cell(other_reset, 1)} |")
    kinds = ["status", "fence"] + (["redfish_status", "redfish_reset"] if "redfish_status_c1" in http else [])
    failures = sum(http[f"{kind}_c{c}"]["non_2xx"] for kind in kinds for c in [1, 16, 64])
    lines += [
        "",
        f"Non-2xx answers from Fencegate in all rows: {failures}. Audit rows written during the run: {http['audit_rows']:,}.",
        f"This disk sustains {http['fsync_per_second']:,.0f} fsyncs/s (one writer, measured in the same run). With",
        "`synchronous=FULL` each audited operation needs two durable writes; concurrent operations share a commit",
        "(group commit), so the audited rate is not bounded by one fsync per write.",
        "",
    ]
    best_status = max(http[f"status_c{c}"]["requests_per_second"] for c in [1, 16, 64])
    best_fence = max(http[f"fence_c{c}"]["requests_per_second"] for c in [1, 16, 64])
    targets += [
        ("HTTP GET status", "≥ 10,000 req/s", f"{best_status:,.0f} req/s", best_status >= 10_000),
        ("HTTP audited fence ops", "≥ 1,000 ops/s", f"{best_fence:,.0f} ops/s", best_fence >= 1_000),
    ]
    if ratios:
        at16 = dict(ratios).get(16)
        targets.append(("HTTP GET, Fencegate ÷ sushy-emulator at 16 connections", "≥ 30", f"{at16:.0f}", at16 >= 30))
    return lines


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
        f"- RSS idle: {http['idle_rss_kib'] / 1024:.1f} MiB; under the HTTP load of section 3 (peak sampled):"
        f" {http['loaded_rss_kib'] / 1024:.1f} MiB.",
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
                f"| {title} | {level} | {row['requests_per_second']:,.0f} | {row['p50_ms']:.2f} / {row['p90_ms']:.2f} /"
                f" {row['p99_ms']:.2f} ms | {row['failures']} | {row['retransmissions']} |"
                f" {row['server_cpu_ms_per_request']:.2f} ms |")
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


def merge(existing, results):
    """`existing` (an earlier report) with this partial run's scenario sections replaced or added, their rows
    under Targets replaced or added, and the profile notes refreshed; every other figure is kept as it was.
    Each replaced section says that it was measured separately, when and by which command; the header lists
    those sections."""
    import re
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
            same = [index for index in rows if lines[index].split(" | ")[0] == what]
            if same:
                lines[same[0]] = row
            else:
                lines.insert(rows[-1] + 1, row)
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
