"""A real OpenAI-compatible chat-completions endpoint on loopback (http.server), counting requests.

It answers the three DocAssist prompts the way a chat model would (a summary, a numbered list
of questions, an answer), and can be told to fail the next requests with given HTTP statuses.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ChatServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.failures: list[int] = []  # statuses to answer the next requests with
        self.reply: str | None = None  # a fixed answer to every prompt (e.g. a judge's grade)
        # answer 400 to every request after this many (an outage)
        self.fail_after: int | None = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(
                        {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                    )
                    status = server.failures.pop(0) if server.failures else 200
                    if server.fail_after is not None and len(server.requests) > server.fail_after:
                        status = 400
                if self.path != "/v1/chat/completions":
                    status = 404
                if status != 200:
                    payload = json.dumps({"error": {"message": f"status {status}"}}).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                else:
                    answer = (
                        server.reply
                        if server.reply is not None
                        else server.answer(body["messages"][-1]["content"])
                    )
                    payload = json.dumps(
                        {
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": answer},
                                    "finish_reason": "stop",
                                }
                            ],
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def answer(prompt: str) -> str:
        first_line = prompt.split("Document:\n", 1)[-1].strip().splitlines()[0]
        if "suggest three questions" in prompt:
            return (
                "1. What is described in the document?\n"
                "2. Which numbers does it give?\n3. Who is responsible?"
            )
        if "Question:" in prompt:
            question = prompt.rsplit("Question:", 1)[1].strip()
            return f"The document answers '{question}' with: {first_line[:60]}."
        return f"The document is about {first_line[:80]}."


@pytest.fixture
def chat_server():
    server = ChatServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
