"""Run a notebook in a kernel of someone's running Jupyter server (a student's, on JupyterHub).

``labchat check`` runs a notebook in a kernel of its own. On a class server the notebook
should run where the student's work runs: in a kernel of *their* single-user server, as
*their* system user, capturing in *their* private namespaces. `execute_notebook` does that
through the server's REST API and kernel websocket (the Jupyter messaging protocol, the JSON
form every Jupyter server speaks), cell by cell, errors not stopping the run, as
`labchat.classroom.checker.collect` expects it.

    async with ServerClient("http://hub:8000/user/ana/", token) as server:
        nb = await server.read_notebook("01-watch-a-tcp-handshake.ipynb")
        await server.execute(nb)                     # outputs filled in, as Run All would
        report = collect(nb, notebook="01-...", student="ana")
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.parse
import uuid
from types import TracebackType
from typing import Any

import nbformat

__all__ = ["JsonApi", "RemoteError", "ServerClient"]

#: Seconds one cell may run (as `labchat check`).
CELL_TIMEOUT = 120.0
#: Seconds one request may take. Starting or stopping a kernel waits for the kernel itself: with
#: twenty students starting kernels at once on two cores that took over 60 s (bench/hub.py).
REQUEST_TIMEOUT = 180.0


class RemoteError(RuntimeError):
    """The server refused a request, or a cell did not finish in time."""


class JsonApi:
    """A JSON REST API at `api_url` (ends with ``/``) that takes a token; async, tornado.

    Use it with ``async with``: its HTTP connections close on the way out.

    Args:
        api_url: where ``<path>`` of `api` is appended.
        token: sent as ``Authorization: token ...``.
        timeout: seconds per request.
    """

    def __init__(self, api_url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        from tornado.httpclient import AsyncHTTPClient

        self.api_url = api_url
        self.token = token
        self.timeout = timeout
        # tornado queues requests beyond max_clients (10 by default) and counts the wait in
        # each request's timeout: a class of 30 starting servers at once must not queue.
        self._http = AsyncHTTPClient(force_instance=True, max_clients=1000)

    async def __aenter__(self) -> JsonApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    async def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """``<api_url><path>``: the decoded JSON answer (None for an empty one).

        Raises:
            RemoteError: an HTTP error status.
        """
        from tornado.httpclient import HTTPClientError

        try:
            response = await self._http.fetch(
                self.api_url + path,
                method=method,
                headers={"Authorization": f"token {self.token}"},
                body=None if body is None else json.dumps(body),
                request_timeout=self.timeout,
                allow_nonstandard_methods=True,
            )
        except HTTPClientError as exc:
            text = exc.response.body.decode(errors="replace")[:300] if exc.response else ""
            raise RemoteError(f"{method} {self.api_url}{path}: {exc.code} {text}") from exc
        return json.loads(response.body) if response.body else None


class ServerClient(JsonApi):
    """A Jupyter server (e.g. ``.../user/ana/``) and a token it accepts.

    Args:
        base_url: the server's URL, with its base path.
        token: a token the server accepts (on JupyterHub: one with ``access:servers``).
        timeout: seconds per HTTP request.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        super().__init__(self.base_url + "api/", token, timeout=timeout)

    async def read_notebook(self, path: str) -> Any:
        """The notebook at `path` (relative to the server's root), as the student saved it."""
        model = await self.api(f"contents/{urllib.parse.quote(path)}?content=1")
        return nbformat.from_dict(model["content"])

    async def write_notebook(self, path: str, nb: Any) -> None:
        """Save `nb` at `path`, as the student's Save would."""
        body = {"type": "notebook", "format": "json", "content": nb}
        await self.api(f"contents/{urllib.parse.quote(path)}", "PUT", body)

    async def execute(
        self, nb: Any, *, kernel_name: str = "python3", cell_timeout: float = CELL_TIMEOUT
    ) -> Any:
        """Run every code cell of `nb` in a new kernel of the server; fill in its outputs.

        The kernel is shut down afterwards. A cell that raises does not stop the run (its
        error is an output); a cell that takes longer than `cell_timeout` does.

        Returns:
            `nb`, executed.

        Raises:
            RemoteError: the kernel could not be started, or a cell timed out.
        """
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        kernel = await self.api("kernels", "POST", {"name": kernel_name})
        url = self.base_url.replace("http", "ws", 1) + f"api/kernels/{kernel['id']}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {self.token}"})
        session = uuid.uuid4().hex
        try:
            ws = await websocket_connect(request)
            try:
                for cell in nb.cells:
                    if cell.cell_type == "code":
                        await asyncio.wait_for(_run_cell(ws, session, cell), cell_timeout)
            except asyncio.TimeoutError:
                raise RemoteError(f"a cell ran longer than {cell_timeout} s") from None
            finally:
                ws.close()
        finally:
            await self.api(f"kernels/{kernel['id']}", "DELETE")
        return nb


def _request(session: str, code: str) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": session,
            "username": "labchat",
            "version": "5.3",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        },
        "channel": "shell",
        "buffers": [],
    }


async def _run_cell(ws: Any, session: str, cell: Any) -> None:
    """Send one cell, collect its outputs until its reply and the kernel's idle status."""
    request = _request(session, cell.source)
    msg_id = request["header"]["msg_id"]
    await ws.write_message(json.dumps(request))
    outputs: list[Any] = []
    replied = idle = False
    while not (replied and idle):
        raw = await ws.read_message()
        if raw is None:
            raise RemoteError("the kernel's websocket closed (did the kernel die?)")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if msg.get("channel") == "shell" and kind == "execute_reply":
            replied = True
            cell.execution_count = content.get("execution_count")
        elif kind == "status":
            idle = content["execution_state"] == "idle"
        elif kind == "clear_output":
            outputs.clear()
        elif kind in ("stream", "display_data", "execute_result", "error"):
            out = nbformat.v4.output_from_msg(msg)
            last = outputs[-1] if outputs else None
            if kind == "stream" and last is not None and last.get("name") == out.name:
                last.text += out.text  # one output per stream, as Jupyter saves it
            else:
                outputs.append(out)
    cell.outputs = outputs
