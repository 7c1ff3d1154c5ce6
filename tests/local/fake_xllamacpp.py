"""A stand-in for the xllamacpp package: its Server answers /health (echoing its params) on a real socket."""

from __future__ import annotations

from pathlib import Path

from router.local.catalog import SERVER_PACKAGE

MODULE = '''
import http.server, json, os, threading, types

class CommonParams:
    def __init__(self):
        self.model = types.SimpleNamespace(path="")
        self.cpuparams = types.SimpleNamespace(n_threads=-1)
        self.cpuparams_batch = types.SimpleNamespace(n_threads=-1)
        self.sampling = types.SimpleNamespace(temp=0.8)
        self.hostnames, self.port, self.model_alias = ["127.0.0.1"], 0, set()

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dict(self.server.echo, path=self.path)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server:
    def __init__(self, params):
        if os.environ.get("FAKE_XLLAMACPP_FAIL"):
            raise RuntimeError("failed to load model: " + params.model.path)
        host = params.hostnames[0]
        self._httpd = http.server.ThreadingHTTPServer((host, params.port), _Handler)
        self._httpd.echo = {"status": "ok", "model": params.model.path, "alias": sorted(params.model_alias),
                            "hosts": params.hostnames, "n_ctx": params.n_ctx, "threads": params.cpuparams.n_threads,
                            "parallel": params.n_parallel, "kv_unified": params.kv_unified,
                            "temperature": params.sampling.temp}
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def listening_address(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
'''


def install_fake(root: Path) -> Path:
    """Write the fake package and its dist-info (so the version lookup finds it) under `root`."""
    package = root / "xllamacpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MODULE)
    info = root / f"xllamacpp-{SERVER_PACKAGE.version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: xllamacpp\nVersion: {SERVER_PACKAGE.version}\n")
    return root
