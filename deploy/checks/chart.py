#!/usr/bin/env python3
"""The Helm chart (deploy/helm/streamgate) and the pods its injector makes.

For the chart's default values and every file of its examples/:
  1. `helm lint --strict` (values.schema.json included);
  2. `helm template`, every object validated strictly against the Kubernetes
     schemas (kubernetes-validate; cert-manager's kinds are CRDs it has no
     schema for, and are checked by their fields here instead);
  3. injector mode: the container template equals the kustomize component's
     streamgate container; the webhook (failurePolicy, namespace selector with
     kube-system and the injector's own namespace left out, timeout, CREATE of
     pods only, reinvocationPolicy) reaches the injector's Service and port; the
     injector's flags name the objects the chart renders; RBAC is the one Secret
     and the one webhook configuration; the PodDisruptionBudget keeps one up;
     `streamgate -t` accepts every file of every config ConfigMap;
  4. single-app mode: the same container, Service and config checks as the
     kustomize examples (manifests.py).
Then the injector's golden patched pods (injector/tests/fixtures/reviews/
*.pod.json, which `cargo test` proves are what the injector makes): strictly
valid Pods, and the container, Service-by-name and config checks on each, with
the chart's ConfigMap. --e2e-objects writes the native one, with its
ConfigMap, Secret and Service, for e2e_pod.py.

Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from kubernetes_validate import utils as kv

import manifests
import pod
from manifests import Results, dig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "deploy" / "helm" / "streamgate"
FIXTURES = ROOT / "injector" / "tests" / "fixtures" / "reviews"
COMPONENT = ROOT / "deploy" / "kubernetes" / "components" / "sidecar" / "streamgate-sidecar.yaml"
RELEASE, NAMESPACE = "streamgate", "streamgate"
NOT_IN_SCHEMAS = ("cert-manager.io/",)

# The Secret an operator creates in each app namespace (the chart does not).
def stream_secret(namespace: str, name: str = "streamgate-stream") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"api_key": "REPLACE-WITH-STREAM-API-KEY",
                           "api_secret": "REPLACE-WITH-STREAM-API-SECRET"}}


def helm(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def values_sets() -> list[tuple[str, list[str], str]]:
    """(label, helm arguments, kube version) of each values set rendered."""
    sets = [("default values", [], "1.29.0"),
            ("default values, Kubernetes 1.28 (auto: classic)", [], "1.28.0")]
    for f in sorted((CHART / "examples").glob("*.yaml")):
        sets.append((f"examples/{f.name}", ["-f", str(f)], "1.29.0"))
    return sets


def validate(res: Results, objs: list[dict], versions: list[str]) -> None:
    checked = [o for o in objs if not str(o.get("apiVersion", "")).startswith(NOT_IN_SCHEMAS)]
    skipped = [f"{o['kind']}/{o['metadata']['name']}" for o in objs if o not in checked]
    if skipped:
        res.note(f"no Kubernetes schema for the CRDs {', '.join(skipped)}: their fields are checked below")
    manifests.validate_schemas(res, checked, versions)


def component_container() -> dict:
    patch = yaml.safe_load(COMPONENT.read_text())
    return patch["spec"]["template"]["spec"]["initContainers"][0]


def comparable(c: dict) -> dict:
    """A streamgate container without what each path sets for itself."""
    c = manifests.normalized_container(c)
    c.pop("name", None)
    for p in c.get("ports") or []:
        if p.get("containerPort") == 3000:
            p.pop("name", None)  # sg-http, or the app port's name it took
    c["env"] = sorted(c.get("env") or [], key=lambda e: e["name"])
    for e in c["env"]:
        if e["name"] == "APP_ADDRESS":
            e.pop("value", None)  # the app's port
    return c


def one(objs: list[dict], kind: str) -> Optional[dict]:
    found = pod.by_kind(objs, kind)
    return found[0] if len(found) == 1 else None


def arg_map(container: dict) -> dict[str, str]:
    out = {}
    for a in container.get("args") or []:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
    return out


def check_config_maps(res: Results, sg: manifests.Streamgate, objs: list[dict], label: str) -> None:
    cms = [c for c in pod.by_kind(objs, "ConfigMap") if "streamgate.yaml" in (c.get("data") or {})]
    for cm in cms:
        ns = cm["metadata"]["namespace"]
        for key in sorted(cm["data"]):
            # The pod loads `key` by its -c: the synthetic plan's conventional mounts.
            view = copy.deepcopy(cm)
            view["data"] = {"streamgate.yaml": cm["data"][key]}
            plan = manifests.synthetic_plan([view, stream_secret(ns)], view)
            manifests.check_config(res, sg, plan, f"{label}: ConfigMap {ns}/{cm['metadata']['name']} {key}")


def check_injector(res: Results, sg: manifests.Streamgate, objs: list[dict], label: str,
                   values: dict) -> None:
    """`values`: the chart's values as rendered (defaults and the example merged)."""
    webhook = one(objs, "MutatingWebhookConfiguration")
    deployment = one(objs, "Deployment")
    service = one(objs, "Service")
    if not res.check(webhook and deployment and service,
                     f"{label}: one MutatingWebhookConfiguration, Deployment and Service"):
        return
    injector = deployment["spec"]["template"]["spec"]["containers"][0]
    flags = arg_map(injector)

    # The container template, against the kustomize component's.
    name = deployment["metadata"]["name"]
    template_cm = pod.named(objs, "ConfigMap", f"{name}-template")
    template = yaml.safe_load(dig(template_cm, "data", "sidecar.yaml", default="") or "{}")
    want = comparable(component_container())
    res.check(comparable(template) == want,
              f"{label}: the injected container template is the kustomize component's streamgate container "
              "(but for image, restartPolicy and the proxy port's name, which the injector sets)",
              f"\n{yaml.safe_dump(comparable(template))}\n!=\n{yaml.safe_dump(want)}")
    mounts = {m["name"]: m["mountPath"] for m in injector.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes") or []}
    tpl_mount = next((m for m, p in mounts.items() if flags.get("template", "").startswith(p + "/")), None)
    res.check(tpl_mount is not None and dig(volumes, tpl_mount, "configMap", "name") == f"{name}-template",
              f"{label}: --template {flags.get('template')} is the template ConfigMap, mounted")

    # The webhook and the path to the injector.
    hooks = webhook.get("webhooks") or []
    w = hooks[0] if len(hooks) == 1 else {}
    svc = dig(w, "clientConfig", "service", default={})
    port = next((p for p in service["spec"]["ports"] if p["port"] == svc.get("port", 443)), {})
    cport = next((p for p in injector.get("ports") or [] if p.get("name") == port.get("targetPort")), {})
    res.check(svc.get("name") == service["metadata"]["name"] and svc.get("namespace") == NAMESPACE
              and svc.get("path") == "/mutate" and cport.get("containerPort") == 8443
              and flags.get("listen", "").endswith(":8443"),
              f"{label}: the webhook calls Service {svc.get('name')}:{svc.get('port')}/mutate -> "
              f"container port {cport.get('containerPort')}, where --listen {flags.get('listen')} serves")
    failure = dig(values, "injector", "failurePolicy")
    res.check(w.get("failurePolicy") == failure and w.get("sideEffects") == "None"
              and 1 <= int(w.get("timeoutSeconds", 30)) <= 10 and w.get("reinvocationPolicy") == "Never"
              and w.get("admissionReviewVersions") == ["v1"],
              f"{label}: failurePolicy {w.get('failurePolicy')}, sideEffects None, timeoutSeconds "
              f"{w.get('timeoutSeconds')} (<= 10), reinvocationPolicy Never, AdmissionReview v1")
    rules = w.get("rules") or []
    res.check(rules == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                         "resources": ["pods"], "scope": "Namespaced"}],
              f"{label}: the webhook sees pod CREATE only", str(rules))
    exprs = dig(w, "namespaceSelector", "matchExpressions", default=[]) or []
    excluded = next((e.get("values") for e in exprs if e.get("key") == "kubernetes.io/metadata.name"
                     and e.get("operator") == "NotIn"), []) or []
    opt_in = [e for e in exprs if e.get("key") == "streamgate.getstream.io/inject" and e.get("operator") == "In"]
    res.check("kube-system" in excluded and NAMESPACE in excluded and bool(opt_in),
              f"{label}: namespaces opt in by label; kube-system and the injector's own ({NAMESPACE}) never",
              str(exprs))
    res.check(dig(injector, "readinessProbe", "httpGet", "scheme") == "HTTPS"
              and deployment["spec"].get("replicas", 1) >= 2,
              f"{label}: {deployment['spec'].get('replicas')} injector replicas, probed over HTTPS")
    pdb = one(objs, "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    res.check(pdb is not None and manifests.selects({"spec": {"selector": dig(pdb, "spec", "selector", "matchLabels")}},
                                                    labels)
              and int(pdb["spec"].get("minAvailable", 0)) >= 1,
              f"{label}: a PodDisruptionBudget keeps an injector up")

    # The defaults the injector gives pods name what the chart renders.
    cms = {c["metadata"]["namespace"] for c in pod.by_kind(objs, "ConfigMap")
           if c["metadata"]["name"] == flags.get("config")}
    res.check(cms >= set(dig(values, "config", "namespaces", default=[]) or []),
              f"{label}: --config {flags.get('config')} is rendered in every app namespace {sorted(cms)}")
    if "tls-secret" in flags:
        role, crole = one(objs, "Role"), one(objs, "ClusterRole")
        rules = (role or {}).get("rules") or []
        named = [r for r in rules if r.get("resourceNames") == [flags["tls-secret"]]]
        res.check(bool(named) and set(named[0]["verbs"]) == {"get", "update"}
                  and all(r["resources"] == ["secrets"] for r in rules)
                  and dig(crole, "rules", 0, "resourceNames") == [flags.get("webhook")]
                  and flags.get("webhook") == webhook["metadata"]["name"]
                  and flags.get("service") == service["metadata"]["name"],
                  f"{label}: self-signed: --tls-secret {flags['tls-secret']}, --webhook, --service name the "
                  "chart's objects; RBAC is that Secret and that webhook configuration only")
        res.check(not dig(webhook, "metadata", "annotations", "cert-manager.io/inject-ca-from"),
                  f"{label}: self-signed: no cert-manager annotation")
    else:
        cert = next((o for o in objs if o.get("kind") == "Certificate"), {})
        secret_vol = next((v for v in volumes.values() if "secret" in v), {})
        dns = f"{service['metadata']['name']}.{NAMESPACE}.svc"
        res.check(dig(cert, "spec", "secretName") == dig(secret_vol, "secret", "secretName")
                  and dns in (dig(cert, "spec", "dnsNames") or [])
                  and bool(dig(cert, "spec", "issuerRef", "name"))
                  and dig(webhook, "metadata", "annotations", "cert-manager.io/inject-ca-from")
                  == f"{NAMESPACE}/{cert['metadata']['name']}"
                  and flags.get("tls-cert-file", "").startswith(mounts.get(
                      next((n for n, v in volumes.items() if v is secret_vol), ""), "?")),
                  f"{label}: cert-manager: Certificate for {dns} into the mounted Secret, "
                  "its CA injected into the webhook")
        res.check(one(objs, "Role") is None and one(objs, "ClusterRole") is None,
                  f"{label}: cert-manager: the injector needs no RBAC")
    check_config_maps(res, sg, objs, label)


def check_single_app(res: Results, sg: manifests.Streamgate, objs: list[dict], label: str) -> None:
    deployment = one(objs, "Deployment")
    if not res.check(deployment is not None and not pod.by_kind(objs, "MutatingWebhookConfiguration"),
                     f"{label}: one Deployment, no injector"):
        return
    found = pod.find_streamgate(deployment)
    if not res.check(len(found) == 1, f"{label}: one streamgate container"):
        return
    where, c = found[0]
    objs = objs + [stream_secret(NAMESPACE)]
    plan = pod.pod_plan(objs, deployment, c, where)
    clabel = f"{label}: {deployment['metadata']['name']}/{where}/streamgate"
    manifests.check_streamgate_container(res, objs, plan, clabel)
    manifests.check_services(res, objs, plan, clabel)
    manifests.check_config(res, sg, plan, clabel)
    res.check(comparable(c) == comparable(component_container()),
              f"{clabel}: the kustomize component's streamgate container")


def injected_objects(patched: dict, config: dict) -> list[dict]:
    """A patched pod as a Deployment, its namespace's ConfigMap and Secret, and a
    Service targeting the app's port by name, as the app's own Service does."""
    spec = patched["spec"]
    labels = patched["metadata"].get("labels") or {}
    ns = patched["metadata"].get("namespace", "shop")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "app", "namespace": ns},
                  "spec": {"selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels,
                                                     "annotations": patched["metadata"].get("annotations")},
                                        "spec": spec}}}
    sg = next(c for _, c in pod.find_streamgate(deployment))
    port_name = next(p["name"] for p in sg["ports"] if p["containerPort"] == 3000)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": ns},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": port_name}]}}
    cm = copy.deepcopy(config)
    cm["metadata"]["namespace"] = ns
    return [deployment, service, cm, stream_secret(ns)]


def check_injected_pods(res: Results, sg: manifests.Streamgate, config: dict, versions: list[str],
                        e2e_out: Optional[Path]) -> None:
    pods = sorted(FIXTURES.glob("*.pod.json"))
    res.start(f"injected pods (the injector's golden output, {len(pods)} pods)")
    res.check(len(pods) >= 4, f"{len(pods)} patched pods to check")
    for f in pods:
        case = f.name[: -len(".pod.json")]
        patched = json.loads(f.read_text())
        named = copy.deepcopy(patched)  # as the API server names it after admission
        named["metadata"].setdefault("name", named["metadata"].get("generateName", "") + "x7k2q")
        manifests.validate_schemas(res, [named], versions)
        objs = injected_objects(patched, config)
        deployment = objs[0]
        where, c = pod.find_streamgate(deployment)[0]
        plan = pod.pod_plan(objs, deployment, c, where)
        label = f"{case}: {where}/streamgate"
        mount = plan.mount_for(plan.config_path)
        own = mount is not None and mount.source != config["metadata"]["name"]
        if own:
            # The annotations name the app's own ConfigMap and file: the chart's
            # configuration stands in for it, under that name and key.
            cm = objs[2]
            cm["metadata"]["name"] = mount.source
            cm["data"] = {plan.config_path[len(mount.path):].lstrip("/"): cm["data"]["streamgate.yaml"]}
            secret = objs[3]
            secret["metadata"]["name"] = dig(c, "env", 1, "valueFrom", "secretKeyRef", "name") or "?"
            plan = pod.pod_plan(objs, deployment, c, where)
        manifests.check_streamgate_container(res, objs, plan, label)
        manifests.check_services(res, objs, plan, label)
        if own:
            res.note(f"{label}: ConfigMap {mount.source} is the app's own (annotation): no streamgate -t")
        else:
            manifests.check_config(res, sg, plan, label)
        if case == "native-named-port" and e2e_out is not None:
            e2e_out.write_text(yaml.safe_dump_all(objs, sort_keys=False))
            res.note(f"{label}: written for the pod-shaped e2e: {e2e_out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--streamgate", required=True, type=Path)
    ap.add_argument("--k8s-versions", default="1.29.0,latest")
    ap.add_argument("--e2e-objects", type=Path, help="write the injected pod's objects here")
    args = ap.parse_args()

    res = Results()
    versions = [kv.latest_version() if v == "latest" else v for v in args.k8s_versions.split(",")]
    sg = manifests.Streamgate(args.streamgate.resolve(), res)
    default_config: Optional[dict] = None
    for label, extra, kube in values_sets():
        res.start(f"chart: {label}")
        out = helm(args.helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *extra)
        res.check(out.returncode == 0, "helm lint --strict", (out.stdout + out.stderr).strip()[-1500:])
        out = helm(args.helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                   "--kube-version", kube, *extra)
        if not res.check(out.returncode == 0, f"helm template (Kubernetes {kube})", out.stderr.strip()[-1500:]):
            continue
        objs = pod.load_all(out.stdout)
        res.check(bool(objs), f"{len(objs)} objects")
        validate(res, objs, versions)
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        for i in range(0, len(extra), 2):
            overlay = yaml.safe_load(Path(extra[i + 1]).read_text()) or {}
            values = merge(values, overlay)
        if dig(values, "injector", "enabled"):
            check_injector(res, sg, objs, label, values)
            kind = next((a.split("=", 1)[1] for a in one(objs, "Deployment")["spec"]["template"]["spec"]
                         ["containers"][0]["args"] if a.startswith("--sidecar=")), "")
            mode = dig(values, "injector", "sidecarMode")
            want = mode if mode != "auto" else ("native" if kube >= "1.29" else "classic")
            res.check(kind == want, f"{label}: sidecarMode {mode} on Kubernetes {kube} -> --sidecar={kind}")
        if dig(values, "singleApp", "enabled"):
            check_single_app(res, sg, objs, label)
        if label == "default values":
            default_config = next((c for c in pod.by_kind(objs, "ConfigMap")
                                   if c["metadata"]["name"] == "streamgate-config"), None)
    if default_config is None:
        # The default values render no app namespace: take the example's.
        out = helm(args.helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                   "--set", "config.namespaces={shop}")
        default_config = next(c for c in pod.by_kind(pod.load_all(out.stdout), "ConfigMap")
                              if c["metadata"]["name"] == "streamgate-config")
    check_injected_pods(res, sg, default_config, versions, args.e2e_objects)

    total = res.passed + len(res.failed)
    print(f"chart: {res.passed} passed, {len(res.failed)} failed ({total} checks)")
    for f in res.failed:
        print(f"  FAILED: {f}")
    return 0 if not res.failed else 1


def merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = merge(base.get(k), v)
        return out
    return overlay


if __name__ == "__main__":
    sys.exit(main())
