#!/usr/bin/env python3
"""The published contracts of streamgate, checked with independent tools.

1. The JSON Schema of the configuration (conf/streamgate.schema.json):
   - it is a valid draft 2020-12 schema (check-jsonschema --check-metaschema);
   - every shipped configuration carries the editor's modeline
     `# yaml-language-server: $schema=<path>` with <path> leading to it, and
     validates against it: conf/*.yaml, demo/streamgate.yaml, and the files the
     ConfigMaps of deploy/kubernetes are generated from (configMapGenerator),
     or inline ConfigMaps' streamgate.yaml;
   - the fixtures of tests/fixtures/schema/ say where the schema and
     `streamgate -t` must agree: accepted/ by both (`${VAR:-…}` in string
     values, closed sets included), refused/ by both (a number, a boolean or a
     list given as a `${…}` string, a typo).
2. The OpenAPI document of the token routes: streamgate runs on free loopback
   ports with a token route per identity mode (none, header, jwt,
   forward_auth against a session endpoint this script serves); the
   /openapi.json it serves is a valid OpenAPI 3.1 document
   (openapi-spec-validator), and schemathesis generates requests from the GET /openapi.json it serves and
   checks every answer against the document: status, headers, body schema,
   no 5xx; bodies the document admits are minted for, bodies it refuses get
   a 4xx.

Prints one line per check and a closing "N passed, M failed"; exit status 0
when every check passed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "conf" / "streamgate.schema.json"
FIXTURES = ROOT / "tests" / "fixtures" / "schema"
MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")
# The modeline must be near the top, where editors look for it.
MODELINE_WITHIN_LINES = 5

# schemathesis: bounded by the examples per operation of its fuzzing phase
# (its coverage phase adds the boundary cases of each schema), and killed
# past MAX_SECONDS; a fixed seed so that a failure is reproduced by running
# the check again (CONTRACT_SEED=random explores).
MAX_EXAMPLES = 40
MAX_SECONDS = 150
SEED = os.environ.get("CONTRACT_SEED", "20261130")

JWT_SECRET = "contract-idp-secret"
JWT_AUDIENCE = "contract"
SESSION_USER = "alice"


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed.append(what)
            print(f"  FAIL  {what}" + (f"\n{detail}" if detail else ""))
        return ok


# ---------------------------------------------------------------- configs


def configmap_sources() -> list[Path]:
    """The files deploy/kubernetes's configMapGenerators make streamgate.yaml from."""
    sources = []
    for kustomization in sorted((ROOT / "deploy" / "kubernetes").rglob("kustomization.yaml")):
        document = yaml.safe_load(kustomization.read_text()) or {}
        for generator in document.get("configMapGenerator") or []:
            for entry in generator.get("files") or []:
                key, _, path = entry.rpartition("=")
                if (key or Path(path).name) == "streamgate.yaml":
                    sources.append((kustomization.parent / path).resolve())
    return sources


def inline_configmaps(directory: Path) -> list[Path]:
    """streamgate.yaml of ConfigMaps written out in deploy/kubernetes, as files in `directory`."""
    found = []
    for manifest in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "ConfigMap":
                continue
            text = (document.get("data") or {}).get("streamgate.yaml")
            if text is not None:
                name = document.get("metadata", {}).get("name", "configmap")
                path = directory / f"{manifest.stem}-{name}.yaml"
                path.write_text(text)
                found.append(path)
    return found


def shipped_configs() -> list[Path]:
    configs = sorted((ROOT / "conf").glob("*.yaml")) + [ROOT / "demo" / "streamgate.yaml"]
    configs += configmap_sources()
    return list(dict.fromkeys(path.resolve() for path in configs))


def modeline_target(config: Path) -> Path | None:
    for line in config.read_text().splitlines()[:MODELINE_WITHIN_LINES]:
        match = MODELINE.match(line)
        if match:
            return (config.parent / match.group(1)).resolve()
    return None


def validate(bin_dir: Path, files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "check-jsonschema"), "--schemafile", str(SCHEMA), *map(str, files)],
        capture_output=True,
        text=True,
    )


def loader_accepts(streamgate: Path, config: Path) -> tuple[bool, str]:
    """`streamgate -t` with no variable set, so that `${VAR:-default}` takes the default."""
    run = subprocess.run(
        [str(streamgate), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    if run.returncode not in (0, 2):
        return False, f"exit {run.returncode}: {run.stderr}"
    return run.returncode == 0, run.stderr


def check_schema(res: Results, bin_dir: Path, streamgate: Path) -> None:
    print(f"== configuration schema: {SCHEMA.relative_to(ROOT)}")
    run = subprocess.run(
        [str(bin_dir / "check-jsonschema"), "--check-metaschema", str(SCHEMA)],
        capture_output=True,
        text=True,
    )
    res.check(run.returncode == 0, "a valid draft 2020-12 schema", run.stdout + run.stderr)

    configs = shipped_configs()
    sources = configmap_sources()
    res.check(
        len(sources) >= 2,
        f"deploy/kubernetes: {len(sources)} ConfigMap source(s) found",
        "expected base/ and examples/tls/: did the configMapGenerators move?",
    )
    for config in configs:
        target = modeline_target(config)
        res.check(
            target == SCHEMA,
            f"{config.relative_to(ROOT)}: `# yaml-language-server: $schema=` leads to the schema",
            f"  found: {target}",
        )
    with tempfile.TemporaryDirectory(prefix="contract-configmaps-") as tmp:
        inline = inline_configmaps(Path(tmp))
        run = validate(bin_dir, configs + inline)
        res.check(
            run.returncode == 0,
            f"check-jsonschema: {len(configs) + len(inline)} shipped configuration(s) validate",
            run.stdout + run.stderr,
        )

    for expected, directory in ((True, FIXTURES / "accepted"), (False, FIXTURES / "refused")):
        fixtures = sorted(directory.glob("*.yaml"))
        res.check(bool(fixtures), f"{directory.relative_to(ROOT)}: fixtures present")
        for fixture in fixtures:
            schema_ok = validate(bin_dir, [fixture]).returncode == 0
            loader_ok, said = loader_accepts(streamgate, fixture)
            verdict = "accepted" if expected else "refused"
            res.check(
                schema_ok == expected and loader_ok == expected,
                f"{fixture.relative_to(ROOT)}: {verdict} by the schema and by streamgate -t",
                f"  schema accepts: {schema_ok}, streamgate -t accepts: {loader_ok}\n{said}",
            )


# ---------------------------------------------------------------- OpenAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def identity_provider_jwt() -> str:
    """A JWT for SESSION_USER, as the configured identity provider would sign it."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": SESSION_USER, "aud": JWT_AUDIENCE, "exp": int(time.time()) + 3600}
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64url(signature.digest())}"


def session_app(bearer: str) -> ThreadingHTTPServer:
    """The app's session endpoint for forward_auth: GET /api/me names SESSION_USER
    for `Authorization: Bearer <bearer>`, and answers 401 to anything else."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            signed_in = (
                self.path == "/api/me"
                and self.headers.get("Authorization") == f"Bearer {bearer}"
            )
            status, body = (200, {"user": {"id": SESSION_USER}}) if signed_in else (401, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def contract_config(port: int, admin_port: int, app_port: int, directory: Path) -> str:
    header = "{ mode: header, header: { user: X-Forwarded-User, roles: X-Forwarded-Roles } }"
    return f"""
listen: ["127.0.0.1:{port}"]
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  app: {{ address: "127.0.0.1:{app_port}", connect_timeout: 1s, read_timeout: 2s }}
stream: {{ api_key: contract-key, api_secret: contract-secret-0123456789abcdef }}
tokens:
  max_validity_seconds: 7200
  anyone_roles: [user, guest]
  allowed_call_types: [default, livestream]
trusted_cidrs: ["127.0.0.0/8"]
rate_limits:
  per_identity: {{ requests: 1000000, window: 1s }}
access_log: {{ format: "off" }}
routes:
  - {{ match: {{ method: POST, path: /api/tokens/user }}, mint: user_token }}
  - {{ match: {{ method: POST, path: /api/tokens/call }}, mint: call_token }}
  - {{ match: {{ method: POST, path: /header/tokens/user }}, mint: user_token, identity: {header} }}
  - {{ match: {{ method: POST, path: /header/tokens/call }}, mint: call_token, identity: {header} }}
  - match: {{ method: POST, path: /jwt/tokens/user }}
    mint: user_token
    identity: {{ mode: jwt, jwt: {{ hs256_secret: {JWT_SECRET}, audience: {JWT_AUDIENCE} }} }}
  - match: {{ method: POST, path: /session/tokens/call }}
    mint: call_token
    identity: {{ mode: forward_auth, forward_auth: {{ path: /api/me, user_id_pointer: /user/id }} }}
server: {{ pid_file: "{directory}/streamgate.pid", upgrade_sock: "{directory}/upgrade.sock" }}
"""


def wait_ready(admin_port: int, process: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


SUMMARY = re.compile(r"(\d+) generated, (.*)$")


def check_openapi(res: Results, bin_dir: Path, streamgate: Path) -> None:
    print("== OpenAPI document of the token routes: schemathesis against a running streamgate")
    jwt = identity_provider_jwt()
    app = session_app(jwt)
    with tempfile.TemporaryDirectory(prefix="contract-openapi-") as tmp:
        directory = Path(tmp)
        port, admin_port = free_port(), free_port()
        config = directory / "streamgate.yaml"
        config.write_text(contract_config(port, admin_port, app.server_address[1], directory))
        log = (directory / "streamgate.log").open("w")
        process = subprocess.Popen(
            [str(streamgate), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            if not res.check(
                wait_ready(admin_port, process, 15),
                f"streamgate ready on 127.0.0.1:{port} (admin {admin_port})",
                (directory / "streamgate.log").read_text(),
            ):
                return
            document_url = f"http://127.0.0.1:{admin_port}/openapi.json"
            with urllib.request.urlopen(document_url, timeout=5) as response:
                document = json.load(response)
            operations = [
                (method.upper(), path)
                for path, item in document.get("paths", {}).items()
                for method in item
            ]
            res.check(
                document.get("openapi") == "3.1.0" and len(operations) == 6,
                f"/openapi.json: OpenAPI 3.1.0, {len(operations)} token operations",
                json.dumps(operations),
            )
            saved = directory / "openapi.json"
            saved.write_text(json.dumps(document))
            run = subprocess.run(
                [str(bin_dir / "openapi-spec-validator"), "--schema", "3.1", str(saved)],
                capture_output=True,
                text=True,
            )
            res.check(
                run.returncode == 0,
                "openapi-spec-validator: a valid OpenAPI 3.1 document",
                run.stdout + run.stderr,
            )
            run_schemathesis(res, bin_dir, document_url, port, jwt, directory)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            app.shutdown()


def run_schemathesis(
    res: Results, bin_dir: Path, document_url: str, port: int, jwt: str, directory: Path
) -> None:
    # Checks left out, and why:
    # - unsupported_method: a method the document does not list is not refused
    #   with 405 by design; it goes on through the route table (to the app, or
    #   a JSON 404 when no route takes it);
    # - use_after_free, ensure_resource_availability: the token routes create no
    #   resources to delete or fetch.
    # A valid identity for the jwt and forward_auth routes, given per security
    # scheme so that their successes are generated too, while the ignored_auth
    # check still sends requests without it (or with a broken one) and
    # expects 401.
    settings = directory / "schemathesis.toml"
    settings.write_text(
        f'[auth.openapi.bearer_jwt]\nbearer = "{jwt}"\n'
        f'[auth.openapi.session_authorization]\napi_key = "Bearer {jwt}"\n'
    )
    command = [
        str(bin_dir / "schemathesis"),
        "--config-file",
        str(settings),
        "--no-color",
        "run",
        document_url,
        "--url",
        f"http://127.0.0.1:{port}",
        "--checks",
        "all",
        "--exclude-checks",
        "unsupported_method,use_after_free,ensure_resource_availability",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "2",
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    started = time.monotonic()
    try:
        run = subprocess.run(
            command, capture_output=True, text=True, cwd=directory, timeout=MAX_SECONDS
        )
    except subprocess.TimeoutExpired as timeout:
        res.check(False, f"schemathesis finished within {MAX_SECONDS} s", str(timeout.stdout))
        return
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    summary = next(
        (match for line in output.splitlines() if (match := SUMMARY.search(line.strip()))),
        None,
    )
    generated = int(summary.group(1)) if summary else 0
    res.check(
        run.returncode == 0 and generated > 0,
        f"schemathesis: {generated} generated request(s), {summary.group(2) if summary else 'no summary'} "
        f"in {elapsed:.0f} s (seed {SEED})",
        output[-20000:],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streamgate", required=True, type=Path)
    parser.add_argument("--bin", required=True, type=Path, help="the venv's bin/ with the tools")
    args = parser.parse_args()
    # schemathesis runs in a temporary directory (its reports land there).
    args.bin, args.streamgate = args.bin.resolve(), args.streamgate.resolve()
    res = Results()
    check_schema(res, args.bin, args.streamgate)
    check_openapi(res, args.bin, args.streamgate)
    print(f"contract-check: {res.passed} passed, {len(res.failed)} failed")
    for what in res.failed:
        print(f"  failed: {what}")
    return 0 if not res.failed else 1


if __name__ == "__main__":
    sys.exit(main())
