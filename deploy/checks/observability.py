#!/usr/bin/env python3
"""Check deploy/observability: the Grafana dashboard and the PrometheusRule.

  1. promtool (Debian's `prometheus` package: see `find_promtool`) checks the
     rule groups of the PrometheusRule's spec (`promtool check rules`) and runs
     the unit tests of deploy/observability/tests/ (`promtool test rules`);
     every alert must have a test where it fires and one where it does not;
     every alert has a severity, a summary, a description and a runbook_url
     whose README anchor exists.
  2. The dashboard is importable: JSON with uid, title, schemaVersion, a
     `datasource` variable that every panel and query uses, the namespace/job/
     pod variables applied to every series it selects, unique panel ids and a
     grid without overlaps. Its queries are valid PromQL (promtool check rules
     on them as recording rules, Grafana's $variables substituted).
  3. Every PromQL expression of both files (and every metric named in their
     descriptions) uses only the metrics streamgate exports, with their
     `_bucket`/`_sum`/`_count` series for histograms only; every label in a
     matcher, a `by`/`on`/... clause, a legend or an alert template exists on
     those metrics (or is one a Kubernetes scrape adds: namespace, pod, job,
     instance...); values of fixed-list labels (status_class, reason, result...)
     are ones streamgate writes; every exported metric is on the dashboard.
     "Exported" is taken from three places that must agree: the names
     registered in src/ (and their label lists in src/telemetry/metrics.rs),
     README's Metrics table, and a live scrape of /metrics from a streamgate
     started here on loopback (conf/tls-grpc.yaml, a TLS listener, no app)
     after a few requests that create labelled series (exported_metrics.py).

Prints one line per check; exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from exported_metrics import HISTOGRAM_SUFFIXES, README, Metric, readme_metrics, scrape_live, source_metrics

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "prometheusrule.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
TESTS = OBS / "tests"
VENV_PROMTOOL = ROOT / "deploy" / ".venv" / "bin" / "promtool"

# Labels the scrape adds (Prometheus' job/instance, prometheus-operator's
# Kubernetes target labels): usable with any metric.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint"}
# Labels whose values come from a fixed list streamgate writes (the others come
# from the configuration: route, upstream, listener, key_set, or are open: version...).
FIXED_VALUE_LABELS = {"status_class", "reason", "result", "limit", "protocol", "mode"}
SEVERITIES = {"critical", "warning", "info"}
DASHBOARD_VARIABLES = {"namespace", "job", "pod"}


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.section = ""

    def start(self, section: str) -> None:
        self.section = section
        print(f"== {section}", flush=True)

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}", flush=True)
        else:
            self.failed.append(f"{self.section}: {what}: {detail}")
            print(f"  FAIL  {what}" + (f": {detail}" if detail != "" else ""), flush=True)
        return ok

    def note(self, text: str) -> None:
        print(f"  note  {text}", flush=True)


# ---------------------------------------------------------------- promtool


def find_promtool(cache: Path) -> tuple[Optional[str], str]:
    """promtool: on PATH (Debian's package installed, or any other), else the
    one extracted before into deploy/.venv/bin, else extracted now from Debian's
    `prometheus` package without installing it (apt-get download + dpkg-deb):
    installing would create a system user, start a Prometheus service where
    there is an init system, and pull in its web assets and node-exporter, none
    of which a rules check needs. Needs only libc; 48 MB on disk."""
    on_path = shutil.which("promtool")
    if on_path:
        return on_path, "on PATH"
    if os.access(cache, os.X_OK):
        return str(cache), "extracted before from Debian's prometheus package"
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
        def download() -> subprocess.CompletedProcess:
            return subprocess.run(["apt-get", "download", "-qq", "prometheus"], cwd=tmp,
                                  capture_output=True, text=True)
        got = download()
        if got.returncode != 0:  # a fresh machine has no package lists yet
            print("  note  apt-get update (no package list has prometheus yet)", flush=True)
            subprocess.run(sudo + ["apt-get", "update", "-qq"], check=False)
            got = download()
        debs = list(Path(tmp).glob("prometheus_*.deb"))
        if got.returncode != 0 or not debs:
            return None, f"apt-get download prometheus failed: {got.stderr.strip()}"
        cache.parent.mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, "./usr/bin/promtool"], stdin=tar.stdout, check=True)
        tar.wait()
        shutil.move(str(Path(tmp) / "usr" / "bin" / "promtool"), str(cache))
        return str(cache), f"extracted from Debian's {debs[0].name} into {cache.relative_to(ROOT)}"


def verdict(ok: bool, out: str) -> str:
    """promtool's closing line when it passed (`SUCCESS: 12 rules found`)."""
    return (out.splitlines()[-1].strip() if out else "") if ok else "FAILED, promtool says"


def promtool_run(promtool: str, *args: str, cwd: Optional[Path] = None) -> tuple[bool, str]:
    p = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


# ---------------------------------------------------------------- PromQL, by pattern


SELECTOR = re.compile(r"\b(streamgate_[a-z_]+)\b\s*(\{(?P<m>[^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}")
TEMPLATE_LABEL = re.compile(r"\{\{[^}]*\$labels\.([a-zA-Z_]\w*)[^}]*\}\}")


def resolve(name: str, metrics: dict[str, Metric]) -> tuple[Optional[Metric], str]:
    """The exported metric a series name belongs to, or why it does not."""
    if name in metrics:
        if metrics[name].type == "histogram":
            return None, f"{name} is a histogram: no series by that name, use {name}_bucket/_sum/_count"
        return metrics[name], ""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and base in metrics:
            if metrics[base].type == "histogram":
                return metrics[base], ""
            return None, f"{name}: {base} is a {metrics[base].type}, not a histogram"
    return None, f"{name} is not a metric streamgate exports"


def known_name(name: str, metrics: dict[str, Metric]) -> bool:
    """A metric named in prose: a family (a histogram's too) or one of its series."""
    return name in metrics or resolve(name, metrics)[0] is not None


def check_expr(expr: str, metrics: dict[str, Metric]) -> tuple[list[str], set[str], set[str]]:
    """Problems of one expression; the labels of its metrics; its grouping labels."""
    problems = []
    available = set(TARGET_LABELS)
    for m in SELECTOR.finditer(expr):
        metric, why = resolve(m.group(1), metrics)
        if metric is None:
            problems.append(why)
            continue
        labels = metric.labels | TARGET_LABELS | ({"le"} if m.group(1).endswith("_bucket") else set())
        available |= labels
        for label, op, value in MATCHER.findall(m.group("m") or ""):
            if label not in labels:
                problems.append(f"{m.group(1)} has no label {label!r} (it has {sorted(metric.labels)})")
            elif label in FIXED_VALUE_LABELS and metric.values and op in ("=", "=~", "!=", "!~"):
                words = value.split("|") if op in ("=~", "!~") else [value]
                bad = [w for w in words if re.fullmatch(r"[\w./-]+", w) and w not in metric.values]
                if bad:
                    problems.append(f"{m.group(1)}{{{label}}} is never {bad} (streamgate writes "
                                    f"{sorted(metric.values)})")
    grouping: set[str] = set()
    for _, labels in GROUPING.findall(expr):
        for label in (x.strip() for x in labels.split(",") if x.strip()):
            grouping.add(label)
            if label not in available:
                problems.append(f"grouping by {label!r}, a label none of the expression's metrics has")
    return problems, available, grouping


def substitute_grafana(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


# ---------------------------------------------------------------- the rules


def github_anchors(markdown: str) -> set[str]:
    anchors, seen = set(), {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6}\s+(.*)", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def check_rules(res: Results, promtool: Optional[str], metrics: dict[str, Metric], work: Path) -> list[str]:
    res.start(f"alerts: {RULES.relative_to(ROOT)}")
    doc = yaml.safe_load(RULES.read_text())
    res.check(doc.get("apiVersion") == "monitoring.coreos.com/v1" and doc.get("kind") == "PrometheusRule"
              and bool((doc.get("metadata") or {}).get("name")),
              "a monitoring.coreos.com/v1 PrometheusRule with a name",
              f"{doc.get('apiVersion')} {doc.get('kind')}")
    groups = (doc.get("spec") or {}).get("groups") or []
    rules_file = work / "streamgate.rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    if promtool:
        ok, out = promtool_run(promtool, "check", "rules", str(rules_file))
        res.check(ok, f"promtool check rules on its spec: {verdict(ok, out)}", out)
    alerts = [r for g in groups for r in g.get("rules") or [] if "alert" in r]
    names = sorted({r["alert"] for r in alerts})
    anchors = github_anchors(README.read_text())
    for rule in alerts:
        what = f"{rule['alert']} ({(rule.get('labels') or {}).get('severity')})"
        problems, available, grouping = check_expr(rule["expr"], metrics)
        ann = rule.get("annotations") or {}
        if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
            problems.append(f"severity is not one of {sorted(SEVERITIES)}")
        missing = [k for k in ("summary", "description", "runbook_url") if not ann.get(k)]
        if missing:
            problems.append(f"no {', '.join(missing)}")
        anchor = (ann.get("runbook_url") or "").partition("#")[2]
        if not (ann.get("runbook_url") or "").startswith("README.md#") or anchor not in anchors:
            problems.append(f"runbook_url {ann.get('runbook_url')!r} is not README.md#<a heading of README>")
        # Labels an alert can carry: what it groups by, else its metrics' and the scrape's.
        by = {lab for kind, labs in GROUPING.findall(rule["expr"]) if kind == "by"
              for lab in (x.strip() for x in labs.split(","))}
        carried = by or available
        for key, text in ann.items():
            for label in TEMPLATE_LABEL.findall(str(text)):
                if label not in carried:
                    problems.append(f"annotation {key} uses $labels.{label}, which the alert does not carry")
            for name in re.findall(r"\bstreamgate_[a-z_]+", str(text)):
                if not known_name(name, metrics):
                    problems.append(f"annotation {key}: {resolve(name, metrics)[1]}")
        res.check(not problems, f"{what}: metrics, labels, severity, annotations, runbook {anchor}", "; ".join(problems))
    return names


def check_rule_tests(res: Results, promtool: Optional[str], names: list[str], work: Path) -> None:
    res.start(f"alert unit tests: {TESTS.relative_to(ROOT)}")
    files = sorted(TESTS.glob("*.yaml"))
    res.check(bool(files), f"{len(files)} test file(s)")
    fires: set[str] = set()
    quiet: set[str] = set()
    cases = 0
    for f in files:
        doc = yaml.safe_load(f.read_text())
        res.check(doc.get("rule_files") == ["streamgate.rules.yaml"],
                  f"{f.name} tests streamgate.rules.yaml (the PrometheusRule's spec, written beside it)",
                  doc.get("rule_files"))
        for test in doc.get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                cases += 1
                (fires if case.get("exp_alerts") else quiet).add(case.get("alertname"))
        copy = work / f.name
        shutil.copy(f, copy)
        if promtool:
            ok, out = promtool_run(promtool, "test", "rules", copy.name, cwd=work)
            res.check(ok, f"promtool test rules {f.name}: {verdict(ok, out)}", out)
    unknown = sorted((fires | quiet) - set(names))
    res.check(not unknown, "every alertname tested is an alert of the PrometheusRule "
              "(a misspelt one would pass as never firing)", unknown)
    res.check(set(names) <= fires, f"each of the {len(names)} alerts has a case where it fires",
              sorted(set(names) - fires))
    res.check(set(names) <= quiet, f"each of the {len(names)} alerts has a case where it does not fire "
              f"({cases} cases in all)", sorted(set(names) - quiet))


# ---------------------------------------------------------------- the dashboard


def all_panels(panels: Iterable[dict]) -> Iterable[dict]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels") or [])


def check_dashboard(res: Results, promtool: Optional[str], metrics: dict[str, Metric], work: Path) -> None:
    res.start(f"dashboard: {DASHBOARD.relative_to(ROOT)}")
    try:
        dash = json.loads(DASHBOARD.read_text())
    except ValueError as e:
        res.check(False, "valid JSON", e)
        return
    res.check(bool(dash.get("uid")) and len(dash["uid"]) <= 40 and bool(dash.get("title"))
              and isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
              f"importable: uid {dash.get('uid')!r}, title {dash.get('title')!r}, "
              f"schemaVersion {dash.get('schemaVersion')}")
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource") or {}
    res.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
              "a `datasource` variable (type datasource, prometheus) picks the Prometheus at import", ds)
    queries = {}  # where -> expr
    for name in sorted(DASHBOARD_VARIABLES):
        v = variables.get(name) or {}
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q or "")
        res.check(v.get("type") == "query" and bool(m) and m.group(2) == name
                  and v.get("datasource") == {"type": "prometheus", "uid": "${datasource}"},
                  f"variable {name}: {q}", v)
        if m:
            queries[f"variable {name}"] = m.group(1)
    panels = [p for p in all_panels(dash.get("panels") or [])]
    ids = [p.get("id") for p in panels]
    res.check(len(ids) == len(set(ids)) and None not in ids, f"{len(panels)} panels, unique ids", ids)
    boxes, problems = [], []
    for p in panels:
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24:
            problems.append(f"panel {p.get('id')} {p.get('title')!r}: gridPos {g}")
            continue
        for other, og in boxes:
            if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and g["y"] < og["y"] + og["h"] \
                    and og["y"] < g["y"] + g["h"]:
                problems.append(f"panels {other!r} and {p.get('title')!r} overlap")
        boxes.append((p.get("title"), g))
    res.check(not problems, "every panel within the 24-column grid, none overlapping", "; ".join(problems))
    legends = {}
    off_datasource: list[str] = []
    for p in panels:
        if p.get("type") == "row":
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        targets = p.get("targets") or []
        bad_ds = [t.get("refId") for t in targets if t.get("datasource") != p.get("datasource")]
        if not (p.get("datasource") == {"type": "prometheus", "uid": "${datasource}"} and targets
                and not bad_ds and len({t.get("refId") for t in targets}) == len(targets)):
            off_datasource.append(f"{where}: {p.get('datasource')}, {len(targets)} queries, "
                                  f"on another datasource: {bad_ds}")
        for t in targets:
            queries[f"{where} {t.get('refId')}"] = t.get("expr") or ""
            legends[f"{where} {t.get('refId')}"] = t.get("legendFormat") or ""
        for name in re.findall(r"\bstreamgate_[a-z_]+", p.get("description") or ""):
            if not known_name(name, metrics):
                res.check(False, f"{where}: description names {name}", resolve(name, metrics)[1])
    res.check(not off_datasource, f"every panel queries ${{datasource}}, each query with its own refId "
              f"({len(queries) - len(DASHBOARD_VARIABLES)} queries)", "; ".join(off_datasource))
    # Valid PromQL: each query as a recording rule, Grafana's variables substituted.
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute_grafana(e)} for i, e in enumerate(queries.values())]
    f = work / "dashboard.rules.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    if promtool:
        ok, out = promtool_run(promtool, "check", "rules", str(f))
        if not ok:  # name the panel and query of each parse error
            wheres = list(queries.items())
            out = re.sub(r"dashboard:query_(\d+)\b", lambda m: "{}: {}".format(*wheres[int(m.group(1))]), out)
        res.check(ok, f"{len(queries)} queries are valid PromQL (promtool check rules, variables substituted)", out)
    used = set()
    for where, expr in queries.items():
        problems, available, grouping = check_expr(expr, metrics)
        for m in SELECTOR.finditer(expr):
            matchers = {lab: val for lab, _, val in MATCHER.findall(m.group("m") or "")}
            lacking = [v for v in sorted(DASHBOARD_VARIABLES) if matchers.get(v) != f"${v}"]
            if lacking and not where.startswith("variable"):
                problems.append(f"{m.group(1)} ignores the variables {lacking} "
                                f"(expected {', '.join(f'{v}=~{chr(34)}${v}{chr(34)}' for v in lacking)})")
            if resolve(m.group(1), metrics)[0]:
                used.add(resolve(m.group(1), metrics)[0].name)
        legend_labels = set(LEGEND.findall(legends.get(where, "")))
        shown = grouping or available
        if legend_labels - shown:
            problems.append(f"legend {legends[where]!r} uses {sorted(legend_labels - shown)}, "
                            f"not among the labels the query returns")
        res.check(not problems, f"{where}: {short(expr)}", "; ".join(problems))
    res.check(used == set(metrics), f"all {len(metrics)} exported metrics are on the dashboard",
              f"without a panel (add one to {DASHBOARD.relative_to(ROOT)}): {sorted(set(metrics) - used)}")


def short(expr: str, width: int = 90) -> str:
    expr = " ".join(expr.split())
    return expr if len(expr) <= width else expr[: width - 1] + "…"


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streamgate", type=Path, required=True, help="the binary, for the live scrape")
    ap.add_argument("--promtool", help="promtool to use (default: see find_promtool)")
    ap.add_argument("--timeout", type=float, default=20, help="seconds for streamgate to become ready")
    args = ap.parse_args()
    res = Results()

    res.start("promtool")
    promtool, how = (args.promtool, "given") if args.promtool else find_promtool(VENV_PROMTOOL)
    version = ""
    if promtool:
        ok, out = promtool_run(promtool, "--version")
        version = out.splitlines()[0] if ok and out else ""
    res.check(bool(promtool) and bool(version), f"{version or 'promtool'} ({how})", how)

    res.start("what streamgate exports: src/, README's Metrics table, a live scrape")
    metrics = source_metrics(res)
    readme_metrics(res, metrics)
    scrape_live(res, args.streamgate.resolve(), metrics, args.timeout)

    with tempfile.TemporaryDirectory(prefix="streamgate-obs-rules-") as tmp:
        work = Path(tmp)
        names = check_rules(res, promtool, metrics, work)
        check_rule_tests(res, promtool, names, work)
        check_dashboard(res, promtool, metrics, work)

    print(f"observability: {res.passed} passed, {len(res.failed)} failed", flush=True)
    for f in res.failed:
        print(f"  FAILED: {f}")
    return 0 if not res.failed else 1


if __name__ == "__main__":
    sys.exit(main())
