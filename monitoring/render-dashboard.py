#!/usr/bin/python3
"""Draws monitoring/fencegate-dashboard.json from real data, without Grafana (README: "Monitoring").

Starts a real `fencegate serve` (libvirt's test driver, a temporary audit log, HTTP on 127.0.0.1) and a real
Prometheus (Debian's `prometheus`, its own temporary configuration and storage, 127.0.0.1) scraping it every
second, sends it real requests for a couple of minutes (fences that succeed, fail and are refused), then
evaluates each panel's own queries through Prometheus's query_range API and draws the panels where the
dashboard places them, with matplotlib. Stops both processes at the end, whatever happens.

    monitoring/render-dashboard.py [--fencegate .build/debug/fencegate] [--seconds 120] [--out PNG]

Needs: the fencegate binary (`swift build`), prometheus and curl, python3-matplotlib.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRAPE_SECONDS = 1
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval would be for a short range at this scrape interval


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url, what, headers=None, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"render-dashboard: {what} did not answer at {url} within {seconds} s")


def request(base, method, path, token):
    """One real HTTP request to Fencegate; returns its status."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, method=method, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def drive_load(base, tokens, seconds):
    """Fences for `seconds`: mostly successful, some failing (unknown domain), some refused (a read-only
    token; a wrong token, in a burst in the middle, beyond the audit rate limit)."""
    random.seed(16)
    domains = ["pcmk1", "pcmk2", "pcmk3", "pcmk4"]
    start = time.monotonic()
    counts = {}
    while (elapsed := time.monotonic() - start) < seconds:
        burst = 0.4 * seconds < elapsed < 0.6 * seconds
        roll = random.random()
        if burst and roll < 0.6:
            status = request(base, "POST", "/domains/pcmk1/off", "fgt_wrong-token")
        elif roll < 0.55:
            domain, action = random.choice(domains), random.choice(["off", "on", "reboot", "on"])
            status = request(base, "POST", f"/domains/{domain}/{action}", tokens["fence"])
        elif roll < 0.75:
            status = request(base, "GET", f"/domains/{random.choice(domains)}", tokens["read"])
        elif roll < 0.85:
            status = request(base, "POST", "/domains/ghost/off", tokens["fence"])
        elif roll < 0.93:
            status = request(base, "POST", "/domains/pcmk5/reboot", tokens["read"])
        else:
            status = request(base, "POST", "/domains/pcmk6/off", "fgt_wrong-token")
        counts[status] = counts.get(status, 0) + 1
        time.sleep(random.uniform(0.05, 0.4))
    return counts


def query_range(prometheus, expr, start, end, step):
    parameters = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{parameters}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"render-dashboard: {expr}: {body}")
    return body["data"]["result"]


def legend(template, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match.group(1), ""), template) or "value"


def filled(expr):
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*")


COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d"]
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"


def draw(dashboard, prometheus, start, end, out):
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit, footer = 0.45, 0.35  # inches per grid row (Grafana: 30 px), and below the panels for the caption
    width, height = 20, rows * unit + footer
    figure = plt.figure(figsize=(width, height), facecolor=BACKGROUND)

    def box(panel):
        """The panel's axes, inside its grid cell with room for its title, ticks and axis labels (inches)."""
        x, y, w, h = (panel["gridPos"][k] for k in ("x", "y", "w", "h"))
        left, right, top, bottom = (0.12, 0.12, 0.3, 0.12) if panel["type"] == "stat" else (0.6, 0.15, 0.35, 0.45)
        return [(x / 24 * width + left) / width, (height - (y + h) * unit + bottom) / height,
                (w / 24 * width - left - right) / width, (h * unit - top - bottom) / height]

    for panel in panels:
        if panel["type"] == "row":
            figure.text(0.006, (height - (panel["gridPos"]["y"] + 0.5) * unit) / height, panel["title"],
                        color=TEXT, fontsize=13, fontweight="bold", va="center")
            continue
        axes = figure.add_axes(box(panel), facecolor=PANEL)
        axes.set_title(panel["title"], color=TEXT, fontsize=11, loc="left", pad=6)
        for spine in axes.spines.values():
            spine.set_color(GRID)
        series = []
        for target in panel["targets"]:
            for result in query_range(prometheus, filled(target["expr"]), start, end, 2):
                times = [float(t) - start for t, _ in result["values"]]
                values = [float(v) for _, v in result["values"]]
                series.append((legend(target.get("legendFormat", ""), result["metric"]), times, values))
        if panel["type"] == "stat":
            draw_stat(axes, panel, series)
        else:
            draw_timeseries(axes, panel, series, end - start)
    figure.text(0.5, 0.1 / height,
                "Drawn by monitoring/render-dashboard.py from fencegate-dashboard.json's own queries, evaluated by a "
                "real Prometheus scraping a real fencegate serve (libvirt test driver) under generated load. "
                "Not a Grafana screenshot.", color="#8e8e8e", fontsize=10, ha="center", va="bottom")
    figure.savefig(out, dpi=80, facecolor=BACKGROUND)


def draw_stat(axes, panel, series):
    axes.set_xticks([])
    axes.set_yticks([])
    if not series:
        axes.text(0.5, 0.45, "No data", color="#8e8e8e", fontsize=16, ha="center", va="center",
                  transform=axes.transAxes)
        return
    mappings = {}
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        mappings.update(mapping.get("options", {}))
    name, _, values = series[0]
    value = values[-1]
    shown = mappings.get(f"{value:g}")
    text = shown["text"] if shown else f"{value:g}"
    color = shown.get("color") if shown else None
    if color:
        axes.set_facecolor({"green": "#37872d", "red": "#c4162a"}.get(color, color))
    axes.text(0.5, 0.5, text, color="white" if color else "#73bf69", fontsize=22, fontweight="bold",
              ha="center", va="center", transform=axes.transAxes)
    axes.text(0.5, 0.12, name, color=TEXT, fontsize=8, ha="center", transform=axes.transAxes)


def draw_timeseries(axes, panel, series, seconds):
    axes.tick_params(colors=TEXT, labelsize=8)
    axes.grid(color=GRID, linewidth=0.6)
    axes.set_xlim(0, seconds)
    axes.set_xlabel("seconds since the start", color="#8e8e8e", fontsize=8, labelpad=1)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    if unit == "s":
        axes.set_ylabel("seconds", color="#8e8e8e", fontsize=8)
    elif "per minute" in panel.get("description", ""):
        axes.set_ylabel("per minute", color="#8e8e8e", fontsize=8)
    if not series:
        axes.text(0.5, 0.5, "No data", color="#8e8e8e", fontsize=14, ha="center", va="center",
                  transform=axes.transAxes)
        return
    for index, (name, times, values) in enumerate(sorted(series)):
        axes.plot(times, values, color=COLORS[index % len(COLORS)], linewidth=1.6, label=name)
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", fontsize=7, ncol=3, facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fencegate", default=os.path.join(ROOT, ".build/debug/fencegate"))
    parser.add_argument("--seconds", type=int, default=120, help="how long to send requests")
    parser.add_argument("--out", default=os.path.join(HERE, "fencegate-dashboard.png"))
    arguments = parser.parse_args()
    with open(os.path.join(HERE, "fencegate-dashboard.json")) as file:
        dashboard = json.load(file)
    prometheus_binary = shutil.which("prometheus")
    if not prometheus_binary:
        raise SystemExit("render-dashboard: prometheus is not installed (apt-get install prometheus)")

    scratch = tempfile.mkdtemp(prefix="fencegate-render-")
    started = []
    try:
        database = os.path.join(scratch, "audit.db")
        world = "test://" + os.path.join(ROOT, "Tests/Fixtures/cluster.xml")
        common = ["--uri", world, "--database", database]

        def token(name, scope):
            return subprocess.run([arguments.fencegate, "token", "create", name, "--scope", scope, *common],
                                  check=True, capture_output=True, text=True).stdout.strip()

        tokens = {"fence": token("pacemaker", "fence"), "read": token("viewer", "read"),
                  "scrape": token("prometheus", "read")}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with open(os.path.join(scratch, "fencegate.log"), "w") as log:
            started.append(subprocess.Popen([arguments.fencegate, "serve", *common, "--listen", f"127.0.0.1:{port}"],
                                            stdout=log, stderr=subprocess.STDOUT))
        wait_for(base + "/healthz", "fencegate")

        with open(os.path.join(scratch, "scrape-token"), "w") as file:
            file.write(tokens["scrape"])
        prometheus_port = free_port()
        prometheus = f"http://127.0.0.1:{prometheus_port}"
        with open(os.path.join(scratch, "prometheus.yml"), "w") as file:
            file.write(f"""global:
  scrape_interval: {SCRAPE_SECONDS}s
  evaluation_interval: {SCRAPE_SECONDS}s
scrape_configs:
  - job_name: fencegate
    authorization:
      credentials_file: {scratch}/scrape-token
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
        with open(os.path.join(scratch, "prometheus.log"), "w") as log:
            started.append(subprocess.Popen([
                prometheus_binary, f"--config.file={scratch}/prometheus.yml",
                f"--storage.tsdb.path={scratch}/tsdb", f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ], stdout=log, stderr=subprocess.STDOUT))
        wait_for(prometheus + "/-/ready", "prometheus")

        start = time.time()
        time.sleep(5)  # a few idle scrapes first
        counts = drive_load(base, tokens, arguments.seconds)
        time.sleep(5)  # and a few after
        end = time.time()
        print("render-dashboard: answers by HTTP status:", dict(sorted(counts.items())))
        up = query_range(prometheus, 'up{job="fencegate"}', start, end, 2)
        if not up or min(float(v) for _, v in up[0]["values"]) < 1:
            raise SystemExit(f"render-dashboard: Prometheus did not scrape Fencegate throughout: {up}")
        draw(dashboard, prometheus, start, end, arguments.out)
        print(f"render-dashboard: wrote {arguments.out}")
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
