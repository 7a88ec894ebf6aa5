#!/usr/bin/env python3
"""What streamgate exports, for deploy/checks/observability.py: the metric
names registered in src/ with their label lists (src/telemetry/metrics.rs),
README's Metrics table (types, and the words that are fixed label values),
and a live /metrics scrape of a streamgate started on loopback; the three
must agree."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
METRICS_RS = ROOT / "src" / "telemetry" / "metrics.rs"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
Results = Any  # observability.Results: check(ok, what, detail), note(text)


class Metric:
    def __init__(self, name: str, labels: set[str]) -> None:
        self.name = name
        self.labels = labels
        self.type = ""  # from README, checked against the live scrape
        self.values: set[str] = set()  # backticked words of README's row: fixed label values


def source_metrics(res: Results) -> dict[str, Metric]:
    """Names registered in src/, and their label lists from metrics.rs."""
    names = set()
    for f in (ROOT / "src").rglob("*.rs"):
        names |= set(re.findall(r'"(streamgate_[a-z_]+)"', f.read_text()))
    text = METRICS_RS.read_text()
    # "name", "help" (one literal, maybe with \-continuations), then either the
    # label slice (`&["a", "b"]`, maybe after the closing of Opts::new) or not.
    pattern = re.compile(r'"(streamgate_[a-z_]+)",\s*"(?:[^"\\]|\\.)*"(?P<rest>[\s,)]*(?P<labels>&\[[^\]]*\])?)', re.S)
    found: dict[str, Metric] = {}
    for m in pattern.finditer(text):
        labels = set(re.findall(r'"([a-z_]+)"', m.group("labels") or ""))
        found[m.group(1)] = Metric(m.group(1), labels)
    res.check(names and set(found) == names,
              f"{len(names)} metric names registered in src/, each with its labels read from "
              f"{METRICS_RS.relative_to(ROOT)}",
              f"names in src/ but not parsed: {sorted(names - set(found))}; parsed but not in src/: "
              f"{sorted(set(found) - names)}")
    return found


def readme_metrics(res: Results, metrics: dict[str, Metric]) -> None:
    """README's Metrics table: the same names, labels; its type and its words."""
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\|\s*`(streamgate_[a-z_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = (m.group(2), set(re.findall(r"`([a-z_]+)`", m.group(3))),
                                set(re.findall(r"`([^`]+)`", m.group(4))))
    res.check(set(rows) == set(metrics), f"README's Metrics table lists exactly these {len(rows)} metrics",
              f"only in README: {sorted(set(rows) - set(metrics))}; only in src: {sorted(set(metrics) - set(rows))}")
    differ = [f"{n}: README {sorted(rows[n][1])}, src {sorted(metrics[n].labels)}"
              for n in sorted(set(rows) & set(metrics)) if rows[n][1] != metrics[n].labels]
    res.check(not differ, "README's Metrics table gives each metric the labels src/ registers", "; ".join(differ))
    for name, (kind, _, words) in rows.items():
        if name in metrics:
            metrics[name].type = kind
            metrics[name].values = words
    refusal = re.search(r"### Refusal reasons\n(.*?)\n### ", README.read_text(), re.S)
    reasons = set(re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)?", refusal.group(1), re.M)) if refusal else set()
    refused = metrics.get("streamgate_tokens_refused_total")
    if refused:
        refused.values |= {r for pair in reasons for r in pair if r}
    classes = re.search(r"const CLASSES: \[&str; \d+\] = \[([^\]]*)\]", METRICS_RS.read_text())
    proxied = metrics.get("streamgate_proxied_requests_total")
    if proxied and classes:
        proxied.values |= set(re.findall(r'"([^"]+)"', classes.group(1)))
    res.check(bool(reasons) and bool(classes), "fixed label values: README's refusal reasons "
              f"({len(reasons)} rows), metrics.rs's status classes, the words of each README row")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_live(res: Results, streamgate: Path, metrics: dict[str, Metric], timeout: float) -> None:
    """Starts streamgate on conf/tls-grpc.yaml (loopback, free ports, no app
    behind it), makes labelled series appear, and compares /metrics with src."""
    ports = {k: free_port() for k in ("LISTEN", "TLS_LISTEN", "ADMIN_LISTEN", "APP_ADDRESS", "GRPC_ADDRESS")}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "error",
           **{k: f"127.0.0.1:{p}" for k, p in ports.items()}}
    with tempfile.TemporaryDirectory(prefix="streamgate-obs-") as tmp:
        log = open(Path(tmp) / "log", "w+")
        proc = subprocess.Popen([str(streamgate), "-c", str(ROOT / "conf" / "tls-grpc.yaml")], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            text = exercise_and_scrape(ports, timeout)
        finally:
            proc.send_signal(signal.SIGINT)  # stops at once (SIGTERM would drain for seconds)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if text is None:
            log.seek(0)
            res.check(False, "streamgate started on conf/tls-grpc.yaml and served /metrics",
                      f"no answer; its log: {log.read()[-2000:]}")
            return
    families = parse_exposition(text)
    res.check(True, f"live scrape of a streamgate on conf/tls-grpc.yaml: {len(families)} metric families")
    unknown = sorted(set(families) - set(metrics))
    res.check(not unknown, "every family in the scrape is registered in src/", unknown)
    for name, fam in sorted(families.items()):
        m = metrics.get(name)
        if not m or not fam["labels"]:
            continue  # label-less, or reported above
        res.check(fam["labels"] == m.labels, f"live {name}{{{', '.join(sorted(fam['labels']))}}}",
                  f"src/README say {sorted(m.labels)}")
    wrong_type = [f"{n}: live {families[n]['type']}, README {m.type}" for n, m in metrics.items()
                  if n in families and families[n]["type"] != m.type]
    res.check(not wrong_type, "every family's # TYPE in the scrape is the type README gives", wrong_type)
    for name in sorted(n for n, m in metrics.items() if m.type == "histogram"):
        fam = families.get(name, {"series": set()})
        missing = [s for s in HISTOGRAM_SUFFIXES if name + s not in fam["series"]]
        res.check(not missing, f"live histogram {name}: _bucket (with le), _sum, _count",
                  f"missing {missing}" if missing else "")
    expected_live = {"streamgate_tls_certificate_expiry_timestamp_seconds", "streamgate_tokens_refused_total",
                     "streamgate_proxied_requests_total", "streamgate_request_heads_refused_total",
                     "streamgate_build_info", "streamgate_secret_loaded"}
    res.check(expected_live <= set(families), "the requests made created the labelled series checked live "
              "(certificate expiry, refused tokens, proxied requests, refused request heads)",
              sorted(expected_live - set(families)))
    unseen = sorted(set(metrics) - set(families))
    if unseen:
        res.note(f"not in this scrape (no series until their event; labels checked against src/ and README): "
                 f"{', '.join(unseen)}")


def exercise_and_scrape(ports: dict[str, int], timeout: float) -> Optional[str]:
    deadline = time.monotonic() + timeout
    admin, plain, tls_port = ports["ADMIN_LISTEN"], ports["LISTEN"], ports["TLS_LISTEN"]
    while time.monotonic() < deadline:
        try:
            if http_get("127.0.0.1", admin, "/readyz")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        return None

    def quietly(fn):
        try:
            fn()
        except OSError:
            pass
    # A refused token (invalid JSON), a minted one, a proxied request to an app that is not there
    # (502, a connect error), a gRPC call to a gRPC upstream that is not there, an oversized head,
    # and a request over the TLS listener.
    quietly(lambda: http_request("127.0.0.1", plain, "POST", "/api/tokens/user", b"{not json",
                                 {"Content-Type": "application/json"}))
    quietly(lambda: http_request("127.0.0.1", plain, "POST", "/api/tokens/user", b'{"userId":"alice"}',
                                 {"Content-Type": "application/json"}))
    quietly(lambda: http_request("127.0.0.1", plain, "GET", "/hello", None, {}))
    quietly(lambda: http_request("127.0.0.1", plain, "POST", "/helloworld.Greeter/SayHello", b"\0\0\0\0\0",
                                 {"Content-Type": "application/grpc", "TE": "trailers"}))
    quietly(lambda: http_request("127.0.0.1", plain, "GET", "/", None, {"X-Big": "x" * 40 * 1024}))
    ctx = ssl.create_default_context(cafile=str(ROOT / "conf" / "tls" / "dev.crt"))
    quietly(lambda: http_request("localhost", tls_port, "GET", "/tls", None, {}, ctx))
    status, body = http_get("127.0.0.1", admin, "/metrics")
    return body.decode() if status == 200 else None


def http_request(host: str, port: int, method: str, path: str, body: Optional[bytes], headers: dict,
                 ctx: Optional[ssl.SSLContext] = None) -> tuple[int, bytes]:
    conn = (http.client.HTTPSConnection(host, port, timeout=5, context=ctx) if ctx
            else http.client.HTTPConnection(host, port, timeout=5))
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    return http_request(host, port, "GET", path, None, {})


def parse_exposition(text: str) -> dict[str, dict]:
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            current = families.setdefault(m.group(1), {"type": m.group(2), "labels": set(), "series": set()})
            continue
        if not line or line.startswith("#") or current is None:
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if not m:
            continue
        current["series"].add(m.group(1))
        labels = set(re.findall(r'([a-zA-Z_]\w*)="', m.group(3) or ""))
        if m.group(1).endswith("_bucket"):
            if "le" not in labels:
                current["series"].discard(m.group(1))
            labels.discard("le")
        current["labels"] |= labels
    return families
