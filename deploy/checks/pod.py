"""What a rendered Deployment asks of the kubelet for its streamgate container,
and how to reproduce it on this machine.

Shared by manifests.py (``streamgate -t`` on each ConfigMap, as the pod would
load it) and e2e_pod.py (the pod-shaped end-to-end test):

- ``find_streamgate`` / ``pod_plan``: the container, its env with secretKeyRef and
  configMapKeyRef resolved against the rendered objects, its volume mounts with
  their contents, its command line;
- ``lay_out``: volumes written the way the kubelet writes them (files behind a
  ``..data`` symlink to a timestamped directory, so an atomic swap is possible);
- ``podfs_command``: a command line that runs the container's command with each
  volume at its mountPath, the root read-only, as the container's user, through
  podfs.sh in a private mount namespace; or, where this machine does not allow
  that, the same layout at rewritten paths.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

HERE = Path(__file__).resolve().parent
PODFS = HERE / "podfs.sh"

# deploy/Dockerfile: ENTRYPOINT and the binary's default -c path.
IMAGE_ENTRYPOINT = "/usr/local/bin/streamgate"
DEFAULT_CONFIG = "/etc/streamgate/streamgate.yaml"
IMAGE_USER = "65532:65532"
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds default


def load_all(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(kubectl: list[str], directory: Path) -> tuple[str, list[dict]]:
    out = subprocess.run(
        kubectl + ["kustomize", str(directory)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{out.stderr.strip()}")
    return out.stdout, load_all(out.stdout)


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def named(objs: list[dict], kind: str, name: str) -> Optional[dict]:
    for o in by_kind(objs, kind):
        if o["metadata"]["name"] == name:
            return o
    return None


def is_streamgate(container: dict) -> bool:
    image = container.get("image", "")
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return container.get("name") == "streamgate" or repo == "streamgate"


def find_streamgate(deployment: dict) -> list[tuple[str, dict]]:
    """(list name, container) for every streamgate container of the pod template."""
    spec = deployment["spec"]["template"]["spec"]
    found = []
    for where in ("initContainers", "containers"):
        for c in spec.get(where) or []:
            if is_streamgate(c):
                found.append((where, c))
    return found


def secret_data(secret: dict) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_data(cm: dict) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}
    data.update({k: v.encode() for k, v in (cm.get("data") or {}).items()})
    return data


@dataclass
class Mount:
    path: str  # mountPath in the container
    volume: str
    kind: str  # configMap, secret, emptyDir, other
    source: str  # ConfigMap / Secret name, "" otherwise
    files: dict[str, bytes] = field(default_factory=dict)
    mode: int = 0o644
    read_only: bool = False


@dataclass
class PodPlan:
    deployment: dict
    container: dict
    list_name: str  # initContainers (native sidecar) or containers
    env: dict[str, str]
    unresolved_env: list[str]
    mounts: list[Mount]
    command: list[str]  # entrypoint + args, with container paths
    config_path: str
    config_text: Optional[str]
    user: str

    @property
    def native_sidecar(self) -> bool:
        return self.list_name == "initContainers" and self.container.get("restartPolicy") == "Always"

    @property
    def pod_spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def grace_seconds(self) -> int:
        return int(self.pod_spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))

    def mount_for(self, path: str) -> Optional[Mount]:
        """The mount a container path lies on (the longest matching mountPath)."""
        best = None
        for m in self.mounts:
            prefix = m.path.rstrip("/") + "/"
            if path == m.path or path.startswith(prefix):
                if best is None or len(m.path) > len(best.path):
                    best = m
        return best

    def config(self) -> dict:
        return yaml.safe_load(self.config_text or "") or {}


def pod_plan(objs: list[dict], deployment: dict, container: dict, list_name: str) -> PodPlan:
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}

    env: dict[str, str] = {}
    unresolved: list[str] = []
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e.get("valueFrom") or {}
        value = None
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            s = named(objs, "Secret", r["name"])
            if s is not None and r["key"] in secret_data(s):
                value = secret_data(s)[r["key"]].decode()
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            cm = named(objs, "ConfigMap", r["name"])
            if cm is not None and r["key"] in configmap_data(cm):
                value = configmap_data(cm)[r["key"]].decode()
        if value is None:
            unresolved.append(e["name"])
        else:
            env[e["name"]] = value

    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"], {})
        m = Mount(path=vm["mountPath"], volume=vm["name"], kind="other", source="",
                  read_only=bool(vm.get("readOnly", False)))
        if "configMap" in vol or "secret" in vol:
            is_cm = "configMap" in vol
            src = vol["configMap"] if is_cm else vol["secret"]
            m.kind = "configMap" if is_cm else "secret"
            m.source = src["name"] if is_cm else src["secretName"]
            obj = named(objs, "ConfigMap" if is_cm else "Secret", m.source)
            data = {} if obj is None else (configmap_data(obj) if is_cm else secret_data(obj))
            if src.get("items"):
                data = {i["path"]: data[i["key"]] for i in src["items"] if i["key"] in data}
            m.files = data
            m.mode = int(src.get("defaultMode", 0o644))
            m.read_only = True  # the kubelet mounts these read-only whatever readOnly says
        elif "emptyDir" in vol:
            m.kind = "emptyDir"
        mounts.append(m)

    command = list(container.get("command") or [IMAGE_ENTRYPOINT])
    args = list(container.get("args") or ([] if container.get("command") else ["-c", DEFAULT_CONFIG]))
    command += args
    config_path = DEFAULT_CONFIG
    for i, a in enumerate(args):
        if a in ("-c", "--conf") and i + 1 < len(args):
            config_path = args[i + 1]
        elif a.startswith("--conf="):
            config_path = a.split("=", 1)[1]

    sc = container.get("securityContext") or {}
    user = IMAGE_USER
    if "runAsUser" in sc:
        user = f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"

    plan = PodPlan(deployment, container, list_name, env, unresolved, mounts, command,
                   config_path, None, user)
    m = plan.mount_for(config_path)
    if m is not None:
        key = config_path[len(m.path):].lstrip("/")
        if key in m.files:
            plan.config_text = m.files[key].decode()
    return plan


def lay_out(plan: PodPlan, root: Path) -> dict[str, Path]:
    """Write each volume under root/volumes/<name> as the kubelet does; mountPath -> dir."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.000000001", time.gmtime())
    dirs: dict[str, Path] = {}
    for m in plan.mounts:
        d = root / "volumes" / m.volume
        d.mkdir(parents=True, exist_ok=True)
        if m.kind == "emptyDir":
            d.chmod(0o777)  # as the kubelet creates an emptyDir
        else:
            d.chmod(0o755)
            (d / stamp).mkdir(mode=0o755, exist_ok=True)
            for key, content in m.files.items():
                f = d / stamp / key
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(content)
                f.chmod(m.mode)
            if not (d / "..data").is_symlink():
                (d / "..data").symlink_to(stamp)
            for key in {k.split("/", 1)[0] for k in m.files}:
                link = d / key
                if not link.is_symlink():
                    link.symlink_to(f"..data/{key}")
            # A mount inside this read-only volume (the certificate Secret at
            # /etc/streamgate/tls in the config's /etc/streamgate) needs its
            # mount point there: the kubelet creates it (kubernetes#60342).
            for other in plan.mounts:
                inner = other.path.rstrip("/")
                if inner.startswith(m.path.rstrip("/") + "/"):
                    (d / inner[len(m.path.rstrip("/")) + 1:]).mkdir(mode=0o755, parents=True, exist_ok=True)
        dirs[m.path] = d
    return dirs


def podfs_available() -> bool:
    """Whether this machine lets us build the container's filesystem view."""
    if os.geteuid() != 0:
        return False
    for tool in ("unshare", "setpriv", "mount"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         "mount -t tmpfs podfs-probe /mnt && mount -o remount,bind,ro /"],
        capture_output=True,
    )
    return probe.returncode == 0


def podfs_command(plan: PodPlan, dirs: dict[str, Path], binary: Path, scratch: Path,
                  command: Optional[list[str]] = None) -> list[str]:
    """Run the container's command (or `command`) with the pod's filesystem view."""
    scratch.mkdir(parents=True, exist_ok=True)
    specs = [f"{IMAGE_ENTRYPOINT}={binary}"]
    # Mounts that hide other sources (e.g. /tmp, where the layout lives) go last;
    # otherwise parents before the mounts inside them, as containerd orders them
    # (/etc/streamgate, then the certificate at /etc/streamgate/tls).
    ordered = sorted(plan.mounts, key=lambda m: (any(
        str(d).startswith(m.path.rstrip("/") + "/") for d in list(dirs.values()) + [binary, scratch]),
        m.path.rstrip("/").count("/")))
    for m in ordered:
        suffix = "" if m.read_only else ":rw"
        specs.append(f"{m.path}={dirs[m.path]}{suffix}")
    return (["unshare", "--mount", "--propagation", "private", "--", "sh", str(PODFS),
             "--scratch", str(scratch), "--ro-root", "--user", plan.user]
            + specs + ["--"] + (command or plan.command))


def rewrite_paths(text: str, dirs: dict[str, Path]) -> str:
    """The fallback without a mount namespace: container paths -> layout paths.

    One pass, longest mountPath first, so that a replacement (itself under /tmp)
    is never rewritten again by a shorter mountPath such as /tmp."""
    paths = sorted(dirs, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p.rstrip("/")) + r"(?=/|\b|$)" for p in paths))
    return pattern.sub(lambda m: str(dirs[_match_key(m.group(0), paths)]), text)


def _match_key(matched: str, paths: list[str]) -> str:
    for p in paths:
        if p.rstrip("/") == matched:
            return p
    raise KeyError(matched)


def rewrite_config_in_layout(plan: PodPlan, dirs: dict[str, Path]) -> None:
    """Fallback: the config file of the layout, with its container paths rewritten."""
    m = plan.mount_for(plan.config_path)
    if m is None or plan.config_text is None:
        return
    key = plan.config_path[len(m.path):].lstrip("/")
    target = (dirs[m.path] / key).resolve()
    mode = target.stat().st_mode
    target.chmod(0o644)
    target.write_text(rewrite_paths(plan.config_text, dirs))
    target.chmod(mode & 0o777)


def fallback_command(plan: PodPlan, dirs: dict[str, Path], binary: Path,
                     command: Optional[list[str]] = None) -> list[str]:
    """The container's command with paths rewritten into the layout (no podfs)."""
    cmd = list(command or plan.command)
    if cmd and cmd[0] == IMAGE_ENTRYPOINT:
        cmd[0] = str(binary)
    return [rewrite_paths(a, dirs) for a in cmd]


def shell_line(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)
