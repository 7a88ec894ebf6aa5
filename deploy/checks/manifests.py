#!/usr/bin/env python3
"""Render every kustomization under deploy/kubernetes and check what it renders.

For each kustomization (components are checked through the kustomizations that
include them):
  1. `kubectl kustomize` renders it;
  2. every object validates, strictly (no unknown fields), against the Kubernetes
     schemas of each version asked for (kubernetes-validate);
  3. `streamgate -t` accepts the config of every ConfigMap, loaded as the pod
     loads it: its env, the Secret's files at their mountPath, read-only root,
     non-root user (podfs.sh), or the same layout at rewritten paths;
  4. every streamgate container holds the points of issue 5, item 2 (probes on
     the admin port, resources, securityContext, preStop sleep, a grace period
     that covers streamgate's shutdown, a writable /tmp for the pid file and
     upgrade socket, config, secret and a TLS listener's certificate files where
     the config looks for them), every
     Service of its pods targets streamgate's port, the component leaves the app's
     containers and Services alone but for that targetPort, and all paths carry the
     same streamgate container.

Exit status 0 when every check passed, 1 otherwise. Prints one line per check.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml
from kubernetes_validate import utils as kv

import pod

DISABLE_ANNOTATION = "streamgate.getstream.io/sidecar"
MEASURED_PEAK_RSS_MIB = 35  # README/bench: 13-35 MiB under load
EXIT_MARGIN_SECONDS = 3  # time left for a container to exit after its drain


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.section = ""

    def start(self, section: str) -> None:
        self.section = section
        print(f"== {section}")

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed.append(f"{self.section}: {what}: {detail}")
            print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, text: str) -> None:
        print(f"  note  {text}")


# ---------------------------------------------------------------- quantities


def mebibytes(q: Any) -> Optional[float]:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(q))
    if not m:
        return None
    factor = {None: 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024,
              "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}[m.group(2)]
    return float(m.group(1)) * factor


def millicores(q: Any) -> Optional[float]:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m)?", str(q))
    if not m:
        return None
    return float(m.group(1)) * (1 if m.group(2) else 1000)


def port_of(address: str) -> int:
    return int(str(address).rsplit(":", 1)[1])


def listen_addresses(cfg: dict) -> list[str]:
    """The config's listen addresses: an entry is "IP:port" or a map with `address`."""
    return [e.get("address", "") if isinstance(e, dict) else str(e) for e in cfg.get("listen") or []]


def tls_files(cfg: dict) -> list[tuple[str, str]]:
    """(key path, file) of every certificate file the TLS listeners read."""
    files = []
    for i, e in enumerate(cfg.get("listen") or []):
        tls = e.get("tls") if isinstance(e, dict) else None
        for key in ("cert_file", "key_file", "client_ca_file"):
            if isinstance(tls, dict) and tls.get(key):
                files.append((f"listen[{i}].tls.{key}", str(tls[key])))
    return files


def dig(obj: Any, *keys: Any, default: Any = None) -> Any:
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


# ---------------------------------------------------------------- streamgate


class Streamgate:
    def __init__(self, binary: Path, res: Results) -> None:
        self.binary = binary
        self.res = res
        self.podfs = pod.podfs_available()
        self._admin: Optional[bool] = None

    def supports_admin(self) -> bool:
        """Whether this streamgate accepts the `admin` section (operations issue)."""
        if self._admin is None:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write('listen: ["127.0.0.1:3000"]\n'
                        'upstreams: { app: { address: "127.0.0.1:8080" } }\n'
                        'stream: { api_key: k, api_secret: s }\n'
                        'admin: { listen: "127.0.0.1:9901" }\n')
                f.flush()
                out = subprocess.run([str(self.binary), "-t", "-c", f.name],
                                     capture_output=True, text=True, timeout=30, env={})
            self._admin = out.returncode == 0
        return self._admin

    def config_test(self, plan: pod.PodPlan) -> tuple[bool, str, str]:
        """streamgate -t on the plan's config, as the container would load it."""
        with tempfile.TemporaryDirectory(prefix="streamgate-t-") as tmp:
            root = Path(tmp)
            root.chmod(0o755)
            dirs = pod.lay_out(plan, root)
            test_cmd = [pod.IMAGE_ENTRYPOINT, "-t", "-c", plan.config_path]
            if self.podfs:
                cmd = pod.podfs_command(plan, dirs, self.binary, root / "scratch", test_cmd)
                how = "in the pod's filesystem view (podfs: mounts at their mountPath, read-only root, uid " + plan.user + ")"
            else:
                pod.rewrite_config_in_layout(plan, dirs)
                cmd = pod.fallback_command(plan, dirs, self.binary, test_cmd)
                how = "on the pod's layout at rewritten paths (no mount namespace here)"
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **plan.env}
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
            text = (out.stdout + out.stderr).strip()
            return out.returncode == 0, text, how


# ---------------------------------------------------------------- checks


def validate_schemas(res: Results, objs: list[dict], versions: list[str]) -> None:
    for v in versions:
        problems = []
        for o in objs:
            name = f"{o.get('kind')}/{dig(o, 'metadata', 'name')}"
            try:
                kv.validate(o, v, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{name}: {path}: {e.message}")
            except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
                problems.append(f"{name}: {e.message}")
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
        res.check(not problems, f"schema {v} (strict): {kinds}", "; ".join(problems))


def synthetic_plan(objs: list[dict], cm: dict) -> pod.PodPlan:
    """For a kustomization without a Deployment (base): the conventional mounts."""
    secret = next((s for s in pod.by_kind(objs, "Secret")), None)
    container: dict = {
        "name": "streamgate",
        "args": ["-c", pod.DEFAULT_CONFIG],
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/streamgate", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "env": [],
    }
    volumes: list[dict] = [{"name": "config", "configMap": {"name": cm["metadata"]["name"]}},
                           {"name": "tmp", "emptyDir": {}}]
    if secret is not None:
        sname = secret["metadata"]["name"]
        container["volumeMounts"].append(
            {"name": "stream", "mountPath": "/var/run/secrets/stream", "readOnly": True})
        volumes.append({"name": "stream", "secret": {"secretName": sname, "defaultMode": 0o444}})
        container["env"].append({"name": "STREAM_API_KEY", "valueFrom": {
            "secretKeyRef": {"name": sname, "key": "api_key"}}})
    deployment = {"metadata": {"name": "(base)"},
                  "spec": {"template": {"spec": {"containers": [container], "volumes": volumes}}}}
    return pod.pod_plan(objs, deployment, container, "containers")


def check_config(res: Results, sg: Streamgate, plan: pod.PodPlan, label: str) -> None:
    ok, output, how = sg.config_test(plan)
    res.check(ok, f"{label}: streamgate -t -c {plan.config_path} {how}", output)
    for line in output.splitlines():
        print(f"          | {line}")
    cfg = plan.config()
    if sg.supports_admin():
        res.check("admin" in cfg, f"{label}: config has an admin section (this streamgate serves "
                  "/healthz and /readyz there; the probes need it)",
                  'add `admin: { listen: "0.0.0.0:9901" }` to deploy/kubernetes/base/streamgate.yaml')
    elif "admin" not in cfg:
        res.note(f"{label}: this streamgate has no admin endpoints yet (`admin` is an unknown key), "
                 "so the config has none; the probes on 9901 need them")


def check_streamgate_container(res: Results, objs: list[dict], plan: pod.PodPlan, label: str) -> None:
    c = plan.container
    cfg = plan.config()
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    numbers = set(ports.values())

    def resolve(port: Any) -> Any:
        return ports.get(port, port) if isinstance(port, str) else port

    image = c.get("image", "")
    res.check(bool(re.search(r":[^/]+$|@sha256:", image)) and not image.endswith(":latest"),
              f"{label}: image {image} is pinned by tag or digest")
    if plan.list_name == "initContainers":
        res.check(c.get("restartPolicy") == "Always",
                  f"{label}: native sidecar (initContainers, restartPolicy: Always)",
                  f"restartPolicy is {c.get('restartPolicy')!r}: an init container that never exits blocks the pod")

    listen_ports = sorted({port_of(a) for a in listen_addresses(cfg)})
    res.check(bool(listen_ports) and all(p in numbers for p in listen_ports),
              f"{label}: containerPort for the config's listen port(s) {listen_ports}",
              f"container ports {sorted(numbers)}")
    admin_port = port_of(dig(cfg, "admin", "listen")) if dig(cfg, "admin", "listen") else 9901
    res.check(admin_port in numbers, f"{label}: containerPort {admin_port} (admin)",
              f"container ports {sorted(numbers)}")

    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        p = c.get(probe) or {}
        get = p.get("httpGet") or {}
        res.check(get.get("path") == path and resolve(get.get("port")) == admin_port,
                  f"{label}: {probe} httpGet {path} on {admin_port}",
                  f"got {get or p or 'none'}")

    req = dig(c, "resources", "requests", default={}) or {}
    lim = dig(c, "resources", "limits", default={}) or {}
    req_mem, lim_mem, req_cpu = mebibytes(req.get("memory")), mebibytes(lim.get("memory")), millicores(req.get("cpu"))
    res.check(req_cpu is not None and req_cpu > 0 and req_mem is not None and lim_mem is not None
              and req_mem <= lim_mem and lim_mem >= 1.5 * MEASURED_PEAK_RSS_MIB,
              f"{label}: resources requests cpu {req.get('cpu')} memory {req.get('memory')}, "
              f"limits memory {lim.get('memory')} (>= 1.5 x measured peak {MEASURED_PEAK_RSS_MIB} MiB)",
              f"requests {req}, limits {lim}")

    sc = c.get("securityContext") or {}
    want = {
        "runAsNonRoot": sc.get("runAsNonRoot") is True and sc.get("runAsUser", 1) != 0,
        "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
        "capabilities drop ALL": "ALL" in (dig(sc, "capabilities", "drop") or []),
        "seccompProfile RuntimeDefault": dig(sc, "seccompProfile", "type") == "RuntimeDefault",
    }
    res.check(all(want.values()), f"{label}: securityContext " + ", ".join(want),
              "missing: " + ", ".join(k for k, v in want.items() if not v))

    sleep = dig(c, "lifecycle", "preStop", "sleep", "seconds")
    res.check(isinstance(sleep, int) and sleep >= 1, f"{label}: preStop sleep action ({sleep} s)",
              f"lifecycle is {c.get('lifecycle')}")

    server = cfg.get("server") or {}
    drain = int(server.get("drain_seconds", 5))
    grace = int(server.get("grace_period_seconds", 5))
    runtimes = int(server.get("graceful_shutdown_timeout_seconds", 5))
    need = (sleep or 0) + drain + grace + runtimes
    parts = (f"preStop {sleep} + drain {drain} + grace_period {grace} "
             f"+ graceful_shutdown_timeout {runtimes}")
    if plan.native_sidecar:
        # The kubelet stops a native sidecar only after the app containers exited.
        app_sleep = max([dig(a, "lifecycle", "preStop", "sleep", "seconds", default=0) or 0
                         for a in plan.pod_spec.get("containers") or []] + [0])
        need += app_sleep
        parts = f"app preStop {app_sleep} + " + parts
    need += EXIT_MARGIN_SECONDS
    explicit = "terminationGracePeriodSeconds" in plan.pod_spec
    res.check(plan.grace_seconds >= need,
              f"{label}: terminationGracePeriodSeconds {plan.grace_seconds}"
              f"{'' if explicit else ' (the default)'} >= {parts} + {EXIT_MARGIN_SECONDS} s to exit = {need}",
              "streamgate would be killed before it drained")

    for key, default in (("pid_file", "/tmp/streamgate.pid"), ("upgrade_sock", "/tmp/streamgate_upgrade.sock")):
        path = server.get(key, default)
        m = plan.mount_for(path)
        res.check(m is not None and m.kind == "emptyDir" and not m.read_only,
                  f"{label}: server.{key} {path} is on a writable emptyDir (read-only root)",
                  f"mount: {m}")

    cm = plan.mount_for(plan.config_path)
    res.check(plan.config_text is not None and cm is not None and cm.kind == "configMap",
              f"{label}: -c {plan.config_path} is a key of a mounted ConfigMap",
              f"mount: {cm}")

    secret_file = dig(cfg, "stream", "api_secret_file")
    if secret_file:
        m = plan.mount_for(secret_file)
        key = secret_file[len(m.path):].lstrip("/") if m else None
        readable = m is not None and (m.mode & 0o004 or dig(plan.pod_spec, "securityContext", "fsGroup"))
        res.check(m is not None and m.kind == "secret" and key in m.files and bool(readable),
                  f"{label}: stream.api_secret_file {secret_file} is key {key!r} of mounted Secret "
                  f"{m.source if m else '?'}, readable by a non-root user (mode {oct(m.mode) if m else '?'})",
                  f"mount: {m}")
    for key, path in tls_files(cfg):
        m = plan.mount_for(path)
        name = path[len(m.path):].lstrip("/") if m else None
        readable = m is not None and (m.mode & 0o004 or dig(plan.pod_spec, "securityContext", "fsGroup"))
        res.check(m is not None and m.kind == "secret" and name in m.files and bool(readable),
                  f"{label}: {key} {path} is key {name!r} of mounted Secret "
                  f"{m.source if m else '?'}, readable by a non-root user (mode {oct(m.mode) if m else '?'})",
                  f"mount: {m}")
    needed = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", plan.config_text or "")))
    missing = [v for v in needed if v not in plan.env]
    res.check(not missing and not plan.unresolved_env,
              f"{label}: env provides the config's ${{VAR}}s without default {needed}",
              f"missing {missing}, unresolved references {plan.unresolved_env}")


def selects(service: dict, labels: dict) -> bool:
    sel = dig(service, "spec", "selector") or {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def check_services(res: Results, objs: list[dict], plan: pod.PodPlan, label: str) -> None:
    labels = dig(plan.deployment, "spec", "template", "metadata", "labels") or {}
    services = [s for s in pod.by_kind(objs, "Service") if selects(s, labels)]
    cfg = plan.config()
    listen_ports = {port_of(a) for a in listen_addresses(cfg)}
    sg_ports = {p.get("name"): p["containerPort"] for p in plan.container.get("ports") or []}
    res.check(bool(services), f"{label}: a Service selects the pods",
              f"no Service selector matches {labels}")
    for s in services:
        bad = []
        for p in dig(s, "spec", "ports") or []:
            target = p.get("targetPort", p.get("port"))
            if isinstance(target, str):
                # A name must be one of streamgate's ports, not the app's.
                target = sg_ports.get(target, f"{target} (not a streamgate port name)")
            if target not in listen_ports:
                bad.append(f"port {p.get('name', p.get('port'))} -> {target}")
        res.check(not bad,
                  f"{label}: Service {s['metadata']['name']} targets streamgate's port {sorted(listen_ports)}, not the app's",
                  ", ".join(bad))


def strip_streamgate(deployment: dict) -> dict:
    """The Deployment without what the component adds."""
    d = copy.deepcopy(deployment)
    spec = d["spec"]["template"]["spec"]
    added_volumes = set()
    for where in ("initContainers", "containers"):
        kept = []
        for c in spec.get(where) or []:
            if pod.is_streamgate(c):
                added_volumes |= {m["name"] for m in c.get("volumeMounts") or []}
            else:
                kept.append(c)
        if where in spec:
            if kept:
                spec[where] = kept
            else:
                del spec[where]
    used = {m["name"] for where in ("initContainers", "containers")
            for c in spec.get(where) or [] for m in c.get("volumeMounts") or []}
    if "volumes" in spec:
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in added_volumes or v["name"] in used]
        if not spec["volumes"]:
            del spec["volumes"]
    return d


def check_component_leaves_app_alone(res: Results, directory: Path, kustomization: dict,
                                     objs: list[dict], label: str) -> None:
    originals: list[dict] = []
    for r in kustomization.get("resources") or []:
        f = directory / r
        if f.is_file():
            originals += pod.load_all(f.read_text())
    for o in originals:
        kind, name = o["kind"], o["metadata"]["name"]
        rendered = pod.named(objs, kind, name)
        if rendered is None:
            res.check(False, f"{label}: {kind}/{name} of the app is rendered", "missing")
            continue
        if kind == "Deployment":
            disabled = dig(o, "metadata", "annotations", DISABLE_ANNOTATION) == "disabled"
            has_sg = bool(pod.find_streamgate(rendered))
            if disabled:
                res.check(not has_sg and rendered == o,
                          f"{label}: Deployment/{name} (annotated {DISABLE_ANNOTATION}: disabled) is left as it was")
            else:
                res.check(has_sg, f"{label}: the component added streamgate to Deployment/{name}")
                res.check(strip_streamgate(rendered) == o,
                          f"{label}: Deployment/{name} is unchanged but for streamgate's container and volumes "
                          "(the app's containers as they were)",
                          yaml.safe_dump(strip_streamgate(rendered))[:400])
        elif kind == "Service":
            changed = copy.deepcopy(rendered)
            for p in dig(changed, "spec", "ports") or []:
                p.pop("targetPort", None)
            orig = copy.deepcopy(o)
            for p in dig(orig, "spec", "ports") or []:
                p.pop("targetPort", None)
            res.check(changed == orig, f"{label}: Service/{name} is unchanged but for targetPort")


TLS_PORT_NAME = "sg-https"
TLS_MOUNT_PATH = "/etc/streamgate/tls"


def normalized_container(c: dict) -> dict:
    c = copy.deepcopy(c)
    c.pop("restartPolicy", None)
    c.pop("image", None)  # each kustomization may point at its own registry
    # What examples/tls adds for its TLS listener: its port and its certificate.
    c["ports"] = [p for p in c.get("ports") or [] if p.get("name") != TLS_PORT_NAME]
    c["volumeMounts"] = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") != TLS_MOUNT_PATH]
    return c


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kubectl", default="kubectl", help="kubectl command (shell words)")
    ap.add_argument("--streamgate", required=True, type=Path)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / "kubernetes")
    ap.add_argument("--k8s-versions", default="1.29.0,latest")
    ap.add_argument("--no-mount-namespace", action="store_true",
                    help="run streamgate -t on the layout at rewritten paths, as without mount namespaces")
    args = ap.parse_args()

    res = Results()
    kubectl = shlex.split(args.kubectl)
    versions = [kv.latest_version() if v == "latest" else v for v in args.k8s_versions.split(",")]
    sg = Streamgate(args.streamgate.resolve(), res)
    if args.no_mount_namespace:
        sg.podfs = False
    root = args.root.resolve()

    kustomizations = sorted(p.parent for p in root.rglob("kustomization.yaml"))
    components = []
    used_components: set[Path] = set()
    containers: dict[str, dict] = {}
    with_components: set[str] = set()
    for directory in kustomizations:
        label = str(directory.relative_to(root))
        k = yaml.safe_load((directory / "kustomization.yaml").read_text())
        if k.get("kind") == "Component":
            components.append(directory)
            continue
        for comp in k.get("components") or []:
            used_components.add((directory / comp).resolve())
            with_components.add(label)
        res.start(label)
        try:
            _, objs = pod.render(kubectl, directory)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            res.check(False, "kubectl kustomize", str(e))
            continue
        res.check(bool(objs), f"kubectl kustomize: {len(objs)} objects")
        validate_schemas(res, objs, versions)

        tested_configmaps = set()
        for d in pod.by_kind(objs, "Deployment"):
            dname = d["metadata"]["name"]
            found = pod.find_streamgate(d)
            if dig(d, "metadata", "annotations", DISABLE_ANNOTATION) == "disabled":
                continue
            if not res.check(len(found) == 1, f"Deployment/{dname}: one streamgate container",
                             f"found {len(found)}"):
                continue
            where, c = found[0]
            plan = pod.pod_plan(objs, d, c, where)
            clabel = f"{dname}/{where}/{c['name']}"
            check_streamgate_container(res, objs, plan, clabel)
            check_services(res, objs, plan, clabel)
            check_config(res, sg, plan, clabel)
            cm = plan.mount_for(plan.config_path)
            if cm is not None:
                tested_configmaps.add(cm.source)
            containers[label] = normalized_container(c)

        for cm in pod.by_kind(objs, "ConfigMap"):
            if "streamgate.yaml" in (cm.get("data") or {}) and cm["metadata"]["name"] not in tested_configmaps:
                plan = synthetic_plan(objs, cm)
                check_config(res, sg, plan, f"ConfigMap/{cm['metadata']['name']} (conventional mounts)")

        if k.get("components"):
            check_component_leaves_app_alone(res, directory, k, objs, label)

    res.start("across kustomizations")
    for comp in components:
        res.check(comp.resolve() in used_components,
                  f"component {comp.relative_to(root)} is rendered through a kustomization that uses it",
                  "add an example that includes it, or it is never validated")
    if containers:
        # The component is the reference: the examples spell out the same container.
        first_label = next((label for label in containers if label in with_components), next(iter(containers)))
        first = containers[first_label]
        for label, c in containers.items():
            if label != first_label:
                res.check(c == first, f"{label}: same streamgate container as {first_label} "
                          "(but for image, restartPolicy, and a TLS listener's port and certificate mount)",
                          "the paths drifted apart")

    total = res.passed + len(res.failed)
    print(f"manifests: {res.passed} passed, {len(res.failed)} failed ({total} checks)")
    for f in res.failed:
        print(f"  FAILED: {f}")
    return 0 if not res.failed else 1


if __name__ == "__main__":
    sys.exit(main())
