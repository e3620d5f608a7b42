#!/usr/bin/env python3
"""TEST STAND-IN for the k3s binary (k3sllm tests only; it runs no Kubernetes).

The k3s role installs this file as /usr/local/bin/k3s in the molecule containers, because K3s's
release downloads cannot be reached from CI. It behaves like k3s where the role looks:

- ``k3s --version`` prints k3s's two version lines;
- ``k3s server`` reads /etc/rancher/k3s/config.yaml (and the token file it names), creates a
  cluster CA, a serving certificate and an admin client certificate under
  /var/lib/rancher/k3s/server/tls, writes the node token and the admin kubeconfig
  (/etc/rancher/k3s/k3s.yaml, mode from ``write-kubeconfig-mode``), tells systemd it is ready
  (Type=notify) and serves HTTPS on port 6443 with client certificates required:
  ``/readyz``, ``/livez``, ``/version``, ``/api/v1/nodes`` and ``/api/v1/nodes/<name>``. Nodes
  report Ready a few seconds after the start, so callers really have to wait;
- ``k3s kubectl drain|uncordon <node>`` prints what kubectl prints and records the call in
  /var/lib/rancher/k3s/standin-kubectl;
- ``k3s agent`` registers with the server named in its config (token in a header), then idles;
- every start is appended to /var/lib/rancher/k3s/standin-starts (version and mode), so tests can
  count restarts.

k3sllm_artifacts.py builds release folders from this file, replacing VERSION.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "v0.0.0+k3s1"
CONFIG = Path("/etc/rancher/k3s/config.yaml")
DATA = Path("/var/lib/rancher/k3s")
TLS = DATA / "server" / "tls"
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
WARMUP_SECONDS = 3.0
STARTED = time.monotonic()
AGENTS: dict[str, float] = {}


def parse_config(text: str) -> dict:
    """Parse the flat YAML k3s config files use: ``key: scalar`` and ``key:`` + ``- item`` lists."""
    result: dict = {}
    current = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("- ") and current is not None:
            result[current].append(_scalar(line.lstrip()[2:]))
            continue
        key, _, value = line.partition(":")
        key = _scalar(key.strip())
        value = value.strip()
        if value == "":
            result[key] = []
            current = key
        elif value == "[]":
            result[key] = []
        else:
            result[key] = _scalar(value)
            current = None
    return result


def _scalar(value: str):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if value in ("true", "false"):
        return value == "true"
    return value


def notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def record_start(mode: str) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with open(DATA / "standin-starts", "a") as log:
        log.write(f"{time.time():.3f} {VERSION} {mode}\n")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(sans: list[str]) -> None:
    TLS.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = TLS / "server-ca.key", TLS / "server-ca.crt"
    if not ca_crt.exists():
        openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_crt),
            "-days",
            "3650",
            "-subj",
            "/CN=k3s-server-ca@standin",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        # One CA signs both sides here; real K3s has a separate client CA.
        (TLS / "client-ca.crt").write_bytes(ca_crt.read_bytes())
    san = ",".join(
        [f"IP:{s}" if s.replace(".", "").isdigit() else f"DNS:{s}" for s in ["127.0.0.1", "localhost", *sans]]
    )
    for name, subject, ext in (
        ("serving-kube-apiserver", "/CN=kube-apiserver", f"subjectAltName={san}"),
        ("client-admin", "/O=system:masters/CN=system:admin", "extendedKeyUsage=clientAuth"),
    ):
        key, crt, csr = TLS / f"{name}.key", TLS / f"{name}.crt", TLS / f"{name}.csr"
        openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            subject,
        )
        extfile = TLS / f"{name}.ext"
        extfile.write_text(ext + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(crt),
            "-days",
            "365",
            "-extfile",
            str(extfile),
        )
        csr.unlink()
        extfile.unlink()
    for path in TLS.iterdir():
        path.chmod(0o600 if path.suffix == ".key" else 0o644)


def b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(port: int, mode: int) -> None:
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    text = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {b64(TLS / "server-ca.crt")}
    server: https://127.0.0.1:{port}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {b64(TLS / "client-admin.crt")}
    client-key-data: {b64(TLS / "client-admin.key")}
"""
    tmp = KUBECONFIG.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(KUBECONFIG)


def node(name: str, since: float) -> dict:
    ready = time.monotonic() - since >= WARMUP_SECONDS
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "nodeInfo": {"kubeletVersion": VERSION},
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "reason": "StandIn"},
            ],
        },
    }


class Api(BaseHTTPRequestHandler):
    server_version = "k3s-standin"
    node_name = "standin"
    token = ""

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        warm = time.monotonic() - STARTED >= WARMUP_SECONDS
        path = self.path.split("?", 1)[0]
        if path in ("/readyz", "/livez", "/healthz"):
            self._send(200 if warm else 503, "ok" if warm else "[-]poststarthook not finished", "text/plain")
        elif path == "/version":
            self._send(200, {"gitVersion": VERSION, "platform": "linux/amd64"})
        elif path == "/api/v1/nodes":
            items = [node(self.node_name, STARTED)] + [node(n, t) for n, t in AGENTS.items()]
            self._send(200, {"kind": "NodeList", "apiVersion": "v1", "items": items})
        elif path.startswith("/api/v1/nodes/"):
            name = path.rsplit("/", 1)[1]
            if name == self.node_name:
                self._send(200, node(name, STARTED))
            elif name in AGENTS:
                self._send(200, node(name, AGENTS[name]))
            else:
                self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        else:
            self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})


class JoinApi(BaseHTTPRequestHandler):
    """Agents register here (stand-in only; real agents use the supervisor port with the token)."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        name = self.path.rsplit("/", 1)[1]
        if self.headers.get("X-Standin-Token") != Api.token:
            self.send_response(401)
        else:
            AGENTS.setdefault(name, time.monotonic())
            self.send_response(204)
        self.end_headers()


def serve(port: int) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "serving-kube-apiserver.crt", TLS / "serving-kube-apiserver.key")
    context.load_verify_locations(TLS / "client-ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    api = ThreadingHTTPServer(("0.0.0.0", port), Api)
    api.socket = context.wrap_socket(api.socket, server_side=True)
    join = ThreadingHTTPServer(("0.0.0.0", port + 1), JoinApi)
    threading.Thread(target=join.serve_forever, daemon=True).start()
    notify_ready()
    api.serve_forever()


def read_token(config: dict) -> str:
    if config.get("token"):
        return str(config["token"])
    token_file = config.get("token-file")
    if token_file and Path(token_file).exists():
        return Path(token_file).read_text().strip()
    return ""


def server(config: dict) -> None:
    record_start("server")
    port = int(config.get("https-listen-port", 6443))
    sans = [str(s) for s in config.get("tls-san", [])]
    make_certificates(sans)
    token_path = DATA / "server" / "token"
    token = read_token(config) or (token_path.read_text().strip() if token_path.exists() else "")
    if not token:
        token = "K10" + secrets.token_hex(24) + "::server:" + secrets.token_hex(16)
    token_path.write_text(token + "\n")
    token_path.chmod(0o600)
    Api.token = token
    Api.node_name = str(config.get("node-name") or socket.gethostname())
    mode = int(str(config.get("write-kubeconfig-mode", "0600")), 8)
    write_kubeconfig(port, mode)
    serve(port)


def agent(config: dict) -> None:
    record_start("agent")
    url = str(config.get("server", ""))
    token = read_token(config)
    if not url or not token:
        sys.exit("k3s agent: server and token are required")
    host_port = url.split("://", 1)[1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    name = str(config.get("node-name") or socket.gethostname())
    request = urllib.request.Request(
        f"http://{host}:{int(port) + 1}/register/{name}", method="POST", headers={"X-Standin-Token": token}
    )
    for _ in range(60):
        try:
            urllib.request.urlopen(request, timeout=5).close()
            break
        except OSError as error:
            print(f"stand-in agent: cannot register with {url}: {error}", file=sys.stderr, flush=True)
            time.sleep(2)
    else:
        sys.exit(1)
    notify_ready()
    while True:
        time.sleep(3600)


def kubectl(args: list[str]) -> None:
    """``kubectl drain|uncordon <node>``: prints what kubectl prints and records the call."""
    if len(args) < 2 or args[0] not in ("drain", "uncordon"):
        sys.exit(f"k3s stand-in: kubectl {' '.join(args)!r} is not implemented")
    DATA.mkdir(parents=True, exist_ok=True)
    with open(DATA / "standin-kubectl", "a") as log:
        log.write(" ".join(args) + "\n")
    if args[0] == "drain":
        print(f"node/{args[1]} cordoned\nnode/{args[1]} drained")
    else:
        print(f"node/{args[1]} uncordoned")


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (k3sllm-standin)")
        print("go version go1.0-standin")
        return
    config = parse_config(CONFIG.read_text()) if CONFIG.exists() else {}
    if argv[0] == "kubectl":
        kubectl(argv[1:])
    elif argv[0] == "server":
        server(config)
    elif argv[0] == "agent":
        agent(config)
    else:
        sys.exit(f"k3s stand-in: command {argv[0]!r} is not implemented")


if __name__ == "__main__":
    main(sys.argv[1:])
