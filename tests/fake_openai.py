"""One scripted fake of an OpenAI-compatible API for the tests: a real HTTP server on 127.0.0.1.

POST /v1/chat/completions answers the statuses in `script` first (each with an OpenAI-style
error body, "scripted failure <code>"), then 200 with a reply (the prompt reversed) and `usage`
(prompt_tokens = the prompt's length, completion_tokens = 3). Every request's Authorization
header and model are kept in `auth` and `models`, so a test can check what reached the API.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, script: list[int] | None = None):
        self.script: list[int] = list(script or [])
        self.auth: list = []
        self.models: list = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.auth.append(self.headers.get("Authorization"))
                outer.models.append(body.get("model"))
                code = outer.script.pop(0) if outer.script else 200
                if code == 200 and self.path == "/v1/chat/completions":
                    prompt = ((body.get("messages") or [{}])[0]).get("content") or ""
                    out = {"id": "x", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": prompt[::-1]}}],
                           "usage": {"prompt_tokens": len(prompt), "completion_tokens": 3,
                                     "total_tokens": len(prompt) + 3}}
                else:
                    code = code if code != 200 else 404
                    out = {"error": {"message": f"scripted failure {code}", "type": "server_error"}}
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.url = f"{self.base}/chat/completions"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
