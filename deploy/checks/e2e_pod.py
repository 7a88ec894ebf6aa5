#!/usr/bin/env python3
"""Pod-shaped end-to-end test of a rendered example.

Runs streamgate as the rendered Deployment describes it, and talks to it as the
kubelet and a client of the Service would:

- the pod is a network namespace with its own loopback and one veth interface
  (pod IP 10.244.0.10); the "node" is a second namespace (10.244.0.1) from which
  every request is sent, so nothing of this machine's own network is used;
- the throwaway app (fake_app.py) listens on the pod's loopback at the
  container's APP_ADDRESS, unreachable from the node: traffic must go through
  streamgate on the pod port;
- streamgate runs with the container's env (secretKeyRef resolved), its volumes
  laid out like the kubelet's (files behind ..data symlinks) and bind-mounted at
  their mountPath, read-only root, uid 65532 without capabilities (podfs.sh);
- checks: probes on the admin port, a token for the signed-in user (key from the
  env, signature with the secret file), refusals, a proxied request, the pid file
  on the emptyDir, rotation of the mounted secret, and the SIGTERM drain and exit
  timed against terminationGracePeriodSeconds.

Where this machine allows no network namespace it runs on loopback with free
ports, and without a mount namespace on the same layout at rewritten paths; it
says which. Bounded by --timeout; cleans up (processes, namespaces, files) on any
exit. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import hmac
import http.client
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pod

HERE = Path(__file__).resolve().parent
SDK_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}
NODE_IP, POD_IP, PREFIX = "10.244.0.1", "10.244.0.10", 24
CLONE_NEWNET = 0x40000000
EXIT_MARGIN_SECONDS = 3


class Failures(Exception):
    pass


class Run:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.namespaces: list[str] = []
        self.tmp: Optional[Path] = None
        self.home_netns: Optional[int] = None  # fd of this process's own namespace

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}", flush=True)
        else:
            self.failed.append(f"{what}: {detail}")
            print(f"  FAIL  {what}" + (f": {detail}" if detail != "" else ""), flush=True)
        return ok

    def cleanup(self) -> None:
        if self.home_netns is not None:
            leave_netns(self)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in self.namespaces:
            # Anything still running in a namespace we made is ours.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                if pid == str(os.getpid()):
                    continue
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- network


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=20)


def make_netns(run: Run) -> Optional[tuple[str, str]]:
    """Two namespaces joined by a veth pair: (pod, node); None when not allowed."""
    tag = str(os.getpid())
    pod_ns, node_ns = f"sg-e2e-pod-{tag}", f"sg-e2e-node-{tag}"
    pod_if, node_if = f"sgp{tag}"[:15], f"sgn{tag}"[:15]
    try:
        sh("ip", "netns", "add", pod_ns)
        run.namespaces.append(pod_ns)
        sh("ip", "netns", "add", node_ns)
        run.namespaces.append(node_ns)
        sh("ip", "link", "add", node_if, "type", "veth", "peer", "name", pod_if)
        try:
            sh("ip", "link", "set", node_if, "netns", node_ns)
            sh("ip", "link", "set", pod_if, "netns", pod_ns)
        except subprocess.CalledProcessError:
            subprocess.run(["ip", "link", "del", node_if], capture_output=True)
            raise
        for ns, ifname, ip in ((node_ns, node_if, NODE_IP), (pod_ns, pod_if, POD_IP)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        return pod_ns, node_ns
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        print(f"  note  no network namespace here ({detail.strip()}); running on loopback", flush=True)
        for ns in list(run.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            run.namespaces.remove(ns)
        return None


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def enter_netns(run: Run, name: str) -> None:
    """Move this process (single-threaded) into namespace `name`: the node's view."""
    run.home_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def leave_netns(run: Run) -> None:
    _setns(run.home_netns)
    os.close(run.home_netns)
    run.home_netns = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- http


def request(host: str, port: int, method: str, path: str, body: Optional[dict] = None,
            headers: Optional[dict] = None, timeout: float = 5) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = dict(headers or {})
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def jwt_parts(token: str) -> tuple[str, dict, bytes, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return header, json.loads(base64.urlsafe_b64decode(pad(payload))), \
        base64.urlsafe_b64decode(pad(signature)), f"{header}.{payload}"


def signed_with(token: str, secret: bytes) -> bool:
    _, _, signature, signing_input = jwt_parts(token)
    return hmac.compare_digest(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest(), signature)


def wait_for(what, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = what()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(interval)
    return None


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--streamgate", required=True, type=Path)
    ap.add_argument("--kustomization", type=Path,
                    default=HERE.parent / "kubernetes" / "examples" / "native-sidecar")
    ap.add_argument("--objects", type=Path,
                    help="take the objects from this YAML file instead of rendering --kustomization "
                         "(chart.py writes an injected pod's)")
    ap.add_argument("--deployment", default="app")
    ap.add_argument("--timeout", type=int, default=120, help="hard bound on the whole test, seconds")
    ap.add_argument("--loopback", action="store_true", help="skip the network namespace")
    ap.add_argument("--no-mount-namespace", action="store_true",
                    help="skip podfs: the layout at rewritten paths, as on a machine without mount namespaces")
    args = ap.parse_args()

    run = Run()

    def bounded(signum, frame):
        raise TimeoutError(f"the pod e2e test exceeded {args.timeout}s")

    def stopped(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGALRM, bounded)
    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    signal.alarm(args.timeout)
    try:
        scenario(run, args)
    except (TimeoutError, Failures, subprocess.SubprocessError, OSError) as e:
        run.check(False, "the test ran to its end", f"{type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
        log = run.tmp / "streamgate.log" if run.tmp else None
        if run.failed and log and log.exists():
            print("  --- streamgate's log:")
            for line in log.read_text(errors="replace").splitlines()[-40:]:
                print(f"  | {line}")
        run.cleanup()
    print(f"pod e2e: {run.passed} passed, {len(run.failed)} failed", flush=True)
    for f in run.failed:
        print(f"  FAILED: {f}")
    return 0 if not run.failed else 1


def scenario(run: Run, args: argparse.Namespace) -> None:
    if args.objects:
        source = args.objects.resolve()
        objs = pod.load_all(source.read_text())
    else:
        source = args.kustomization.resolve()
        _, objs = pod.render(shlex.split(args.kubectl), source)
    deployment = pod.named(objs, "Deployment", args.deployment)
    if deployment is None or not pod.find_streamgate(deployment):
        raise Failures(f"no Deployment {args.deployment} with streamgate in {source}")
    where, container = pod.find_streamgate(deployment)[0]

    # The credentials, as an overlay replaces the Secret template's.
    api_key = f"e2e-key-{secrets.token_hex(4)}"
    api_secret = secrets.token_hex(24)
    probe_plan = pod.pod_plan(objs, deployment, container, where)
    secret_mount = probe_plan.mount_for((probe_plan.config().get("stream") or {}).get("api_secret_file", "/nonexistent"))
    if secret_mount is None or secret_mount.kind != "secret":
        raise Failures("the config's stream.api_secret_file is not on a mounted Secret")
    secret_obj = pod.named(objs, "Secret", secret_mount.source)
    secret_obj.pop("data", None)
    secret_obj["stringData"] = {"api_key": api_key, "api_secret": api_secret + "\n"}
    plan = pod.pod_plan(objs, deployment, container, where)
    cfg = plan.config()

    run.tmp = Path(tempfile.mkdtemp(prefix="streamgate-e2e-"))
    run.tmp.chmod(0o755)
    dirs = pod.lay_out(plan, run.tmp)
    use_podfs = not args.no_mount_namespace and pod.podfs_available()
    netns = None if args.loopback else make_netns(run)

    pod_port = int(cfg["listen"][0].rsplit(":", 1)[1])
    admin_listen = (cfg.get("admin") or {}).get("listen", "0.0.0.0:9901")
    admin_port = int(admin_listen.rsplit(":", 1)[1])
    app_address = plan.env.get("APP_ADDRESS", "127.0.0.1:8080")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **plan.env}
    config_text = plan.config_text or ""
    if netns:
        pod_ns, node_ns = netns
        target = POD_IP
        client_ip = NODE_IP
        wrap = ["ip", "netns", "exec", pod_ns]
        print(f"  note  pod: network namespace {pod_ns} ({POD_IP}), node: {node_ns} ({NODE_IP}), "
              "veth between them", flush=True)
    else:
        target = client_ip = "127.0.0.1"
        wrap = []
        app_address = f"127.0.0.1:{free_port()}"
        pod_port, admin_port = free_port(), free_port()
        env["APP_ADDRESS"] = app_address
        config_text = config_text.replace(cfg["listen"][0], f"127.0.0.1:{pod_port}")
        config_text = config_text.replace(admin_listen, f"127.0.0.1:{admin_port}")
        print(f"  note  loopback: app {app_address}, streamgate {pod_port}, admin {admin_port}", flush=True)

    if use_podfs:
        cmd = pod.podfs_command(plan, dirs, args.streamgate.resolve(), run.tmp / "scratch")
        print(f"  note  streamgate's view: volumes at their mountPath ({', '.join(m.path for m in plan.mounts)}), "
              f"read-only root, uid {plan.user}, no capabilities", flush=True)
    else:
        cmd = pod.fallback_command(plan, dirs, args.streamgate.resolve())
        config_text = pod.rewrite_paths(config_text, dirs)
        print("  note  no mount namespace here: the same layout at rewritten paths", flush=True)
    if config_text != plan.config_text:
        write_layout_config(plan, dirs, config_text)
    print(f"  note  streamgate: {pod.shell_line(plan.command if use_podfs else cmd)} (the container's command"
          f"{'' if use_podfs else ', paths rewritten'})", flush=True)

    # The app, on the pod's loopback.
    app = subprocess.Popen(wrap + [sys.executable, str(HERE / "fake_app.py"), "--listen", app_address,
                                   "--lifetime", str(args.timeout)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run.procs.append(app)
    ready, _, _ = select.select([app.stdout], [], [], 10)
    line = app.stdout.readline().strip() if ready else ""
    if not line.startswith("listening"):
        raise Failures(f"the app did not start: {line!r}")

    log = open(run.tmp / "streamgate.log", "w")
    sg = subprocess.Popen(wrap + cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    run.procs.append(sg)

    if netns:
        enter_netns(run, node_ns)  # from here on, every request comes from the node

    started = time.monotonic()
    ok = wait_for(lambda: request(target, admin_port, "GET", "/healthz", timeout=1)[0] == 200, 15)
    run.check(bool(ok), f"startupProbe/livenessProbe: GET {target}:{admin_port}/healthz -> 200 "
              f"({time.monotonic() - started:.1f} s after start)",
              f"streamgate exited with {sg.poll()}" if sg.poll() is not None else "no answer")
    if not ok:
        raise Failures("streamgate did not come up")
    status, _, body = request(target, admin_port, "GET", "/readyz")
    run.check(status == 200, f"readinessProbe: GET {target}:{admin_port}/readyz -> 200", f"{status} {body[:200]!r}")

    # A token for the signed-in user.
    cookie = {"Cookie": "session=alice-session"}
    status, headers, body = request(target, pod_port, "POST", "/api/tokens/user", {"userId": "alice"}, cookie)
    data = json.loads(body or b"{}").get("data") or {}
    token = data.get("token", "")
    run.check(status == 200 and data.get("userId") == "alice",
              f"POST {target}:{pod_port}/api/tokens/user (cookie of alice) -> 200 for alice", f"{status} {body[:300]!r}")
    run.check(data.get("apiKey") == api_key,
              "apiKey is the Secret's api_key (env STREAM_API_KEY from secretKeyRef)", data.get("apiKey"))
    good = bool(token) and token.startswith(SDK_HEADER + ".") and signed_with(token, api_secret.encode())
    run.check(good and jwt_parts(token)[1].get("user_id") == "alice",
              "token: the SDKs' HS256 header, user_id alice, signed with the secret file "
              f"{(cfg.get('stream') or {}).get('api_secret_file')} (..data symlink, trailing newline dropped)",
              token[:60])
    run.check(headers.get("cache-control") == "no-store", "token response: Cache-Control: no-store",
              headers.get("cache-control"))

    status, _, body = request(target, pod_port, "POST", "/api/tokens/user", {"userId": "alice"})
    run.check(status == 401, "no session cookie -> 401, no token (forward_auth asked the app's /api/me)",
              f"{status} {body[:200]!r}")
    status, _, body = request(target, pod_port, "POST", "/api/tokens/user", {"userId": "bob"}, cookie)
    run.check(status == 403, "alice asking for bob -> 403", f"{status} {body[:200]!r}")

    # Everything else goes to the app.
    status, _, body = request(target, pod_port, "GET", "/hello/world?x=1",
                              headers={"Host": "app.example.com", "X-Request-Probe": "e2e"})
    echo = json.loads(body or b"{}") if status == 200 else {}
    hdrs = {k.lower(): v for k, v in (echo.get("headers") or {}).items()}
    run.check(status == 200 and echo.get("app") == "fake-app" and echo.get("path") == "/hello/world"
              and echo.get("query") == "x=1" and hdrs.get("host") == "app.example.com"
              and hdrs.get("x-request-probe") == "e2e",
              f"GET {target}:{pod_port}/hello/world?x=1 proxied to the app on {app_address}: path, query, Host, headers",
              f"{status} {body[:300]!r}")
    run.check(hdrs.get("x-forwarded-for", "").split(",")[-1].strip() == client_ip,
              f"the app sees X-Forwarded-For {client_ip} (the client's address)", hdrs.get("x-forwarded-for"))
    if netns:
        try:
            request(target, int(app_address.rsplit(":", 1)[1]), "GET", "/", timeout=2)
            reachable = True
        except OSError:
            reachable = False
        run.check(not reachable, f"the app itself ({app_address} in the pod) is not reachable at {target}: "
                  "traffic enters through streamgate only")

    # The pid file on the emptyDir, the only writable place.
    server = cfg.get("server") or {}
    pid_path = server.get("pid_file", "/tmp/streamgate.pid")
    m = plan.mount_for(pid_path)
    if m is not None:
        pid_file = dirs[m.path] / pid_path[len(m.path):].lstrip("/")
        content = pid_file.read_text().strip() if pid_file.exists() else ""
        run.check(content == str(sg.pid), f"pid file {pid_path} written on the emptyDir at {m.path}",
                  f"{pid_file}: {content!r}, streamgate is pid {sg.pid}")

    # Rotation: the kubelet swaps ..data to a new timestamped directory.
    new_secret = secrets.token_hex(24)
    rotate_secret(dirs[secret_mount.path], "api_secret", new_secret + "\n")
    t0 = time.monotonic()

    def rotated():
        s, _, b = request(target, pod_port, "POST", "/api/tokens/user", {"userId": "alice"}, cookie)
        t = (json.loads(b or b"{}").get("data") or {}).get("token", "")
        return s == 200 and signed_with(t, new_secret.encode())
    ok = wait_for(rotated, 5, 0.2)
    run.check(bool(ok), f"Secret rotation (..data swapped as the kubelet does): new tokens signed with the new "
              f"secret after {time.monotonic() - t0:.1f} s, no restart", "still the old secret after 5 s")

    # SIGTERM, as the kubelet sends it after the preStop sleep.
    drain = int(server.get("drain_seconds", 5))
    grace = int(server.get("grace_period_seconds", 5))
    runtimes = int(server.get("graceful_shutdown_timeout_seconds", 5))
    t0 = time.monotonic()
    sg.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    status, _, _ = request(target, admin_port, "GET", "/readyz")
    run.check(status == 503, "after SIGTERM: /readyz -> 503 at once (endpoints drop the pod)", status)
    status, _, _ = request(target, pod_port, "POST", "/api/tokens/user", {"userId": "alice"}, cookie)
    status2, _, _ = request(target, pod_port, "GET", "/hello")
    run.check(status == 200 and status2 == 200 and time.monotonic() - t0 < drain,
              f"during drain_seconds ({drain} s): tokens and proxying still served", f"{status} {status2}")
    try:
        code = sg.wait(timeout=drain + grace + runtimes + 5)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - t0
    sleep = (container.get("lifecycle") or {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    budget = plan.grace_seconds - sleep - EXIT_MARGIN_SECONDS
    if plan.native_sidecar:
        budget -= max([((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
                       for c in plan.pod_spec.get("containers") or []] + [0])
    run.check(code == 0 and took <= drain + grace + runtimes + 1 and took <= budget,
              f"SIGTERM -> exit 0 after {took:.1f} s (drain {drain} + grace {grace} + at most {runtimes}); "
              f"within terminationGracePeriodSeconds {plan.grace_seconds} less the preStop sleeps and "
              f"{EXIT_MARGIN_SECONDS} s ({budget} s)", f"exit {code} after {took:.1f} s")


def write_layout_config(plan: pod.PodPlan, dirs: dict[str, Path], text: str) -> None:
    m = plan.mount_for(plan.config_path)
    target = (dirs[m.path] / plan.config_path[len(m.path):].lstrip("/")).resolve()
    mode = target.stat().st_mode & 0o777
    target.chmod(0o644)
    target.write_text(text)
    target.chmod(mode)


def rotate_secret(volume: Path, key: str, value: str) -> None:
    """What the kubelet's AtomicWriter does: new timestamped dir, ..data swapped by rename."""
    old = os.readlink(volume / "..data")
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.000000002", time.gmtime())
    new = volume / stamp
    shutil.copytree(volume / old, new, symlinks=True)
    f = new / key
    mode = f.stat().st_mode & 0o777
    f.chmod(0o644)
    f.write_text(value)
    f.chmod(mode)
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(stamp)
    os.rename(tmp_link, volume / "..data")
    shutil.rmtree(volume / old)


if __name__ == "__main__":
    sys.exit(main())
