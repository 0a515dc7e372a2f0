"""Property-based stateful test of a real server (issue 3).

Hypothesis drives a handful of clients through connect / login / say / tell / who / quit /
abrupt disconnect against one real TLS server per run, and after every step checks the
room's central promise: every logged-in client has received exactly the room's accepted MSG
lines since it logged in, in order, and exactly the PRIV lines sent to it.

Synchronisation without sleeps: `say` waits for the speaker's own echo (the room fans a line
out to every member's outbox before the speaker's thread writes it back), and the invariant
sends each client a PING: its PONG is queued behind anything the room gave that client first.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from helpers import wait_until
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.certs import create_lab_certs
from labchat.client import ChatError, Client, ConnectionClosed
from labchat.server import Server

PASSWORD = "correct horse"
NAMES = ("ann", "ben", "cat", "dan")
SLOTS = st.integers(min_value=0, max_value=len(NAMES) - 1)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda t: t.strip() == t and t)


class Conn:
    """The model's view of one connection: what it should and did receive."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.user: str | None = None
        self.expected_msgs: list[p.Msg] = []
        self.expected_privs: list[p.Priv] = []
        self.got_msgs: list[p.Msg] = []
        self.got_privs: list[p.Priv] = []

    def absorb(self, events: list[p.ServerMessage]) -> None:
        for event in events:
            if isinstance(event, p.Msg):
                self.got_msgs.append(event)
            elif isinstance(event, p.Priv):
                self.got_privs.append(event)
            else:
                assert isinstance(event, p.Join | p.Leave | p.Pong), event

    def sync(self) -> None:
        """Everything the server queued for us before now has arrived after this."""
        self.client.ping()
        self.absorb(list(self.client._events))
        self.client._events.clear()
        self.absorb(self.client.recv_all(0))


class ChatRoom(RuleBasedStateMachine):
    root: Path  # set by the test before running

    def __init__(self) -> None:
        super().__init__()
        self.server = Server(
            port=0,
            certs_dir=self.root / "certs",
            users=self.store,
            flood_burst=1000,
            flood_rate=10000.0,
            handshake_timeout=5.0,
        ).start()
        self.conns: dict[int, Conn] = {}
        self.serial = 0

    store: UserStore

    # -- helpers -------------------------------------------------------------------------

    def _connect(self) -> Client:
        host, port = self.server.address
        return Client(host, port, cafile=str(self.root / "certs" / "ca.pem"), timeout=5.0)

    def _members(self) -> dict[str, Conn]:
        return {c.user: c for c in self.conns.values() if c.user is not None}

    def _wait_gone(self, user: str) -> None:
        wait_until(lambda: user not in self.server.room.names(), 3.0, f"{user} to leave the room")

    # -- rules ---------------------------------------------------------------------------

    def _pick(self, data: st.DataObject, logged_in: bool | None) -> int:
        slots = sorted(
            s
            for s, c in self.conns.items()
            if logged_in is None or (c.user is not None) == logged_in
        )
        return data.draw(st.sampled_from(slots))

    def _any(self, logged_in: bool | None) -> bool:
        return any(
            logged_in is None or (c.user is not None) == logged_in for c in self.conns.values()
        )

    @initialize()
    def two_in_the_room(self) -> None:
        # Start with a conversation going, so that every step can already say something.
        for slot in (0, 1):
            conn = self.conns[slot] = Conn(self._connect())
            conn.client.login(NAMES[slot], PASSWORD)
            conn.user = NAMES[slot]

    @precondition(lambda self: len(self.conns) < len(NAMES))
    @rule(data=st.data())
    def connect(self, data: st.DataObject) -> None:
        slot = data.draw(st.sampled_from([s for s in range(len(NAMES)) if s not in self.conns]))
        self.conns[slot] = Conn(self._connect())

    @precondition(lambda self: self._any(logged_in=False))
    @rule(data=st.data())
    def login(self, data: st.DataObject) -> None:
        slot = self._pick(data, logged_in=False)
        conn = self.conns[slot]
        name = NAMES[slot]
        # After a takeover another slot may hold this name: this login takes it back.
        holder = next((s for s, c in self.conns.items() if c.user == name), None)
        conn.client.login(name, PASSWORD)
        conn.user = name
        if holder is not None:
            self._replaced(self.conns.pop(holder))

    @rule(slot=SLOTS, other=SLOTS)
    def login_as_someone_logged_in(self, slot: int, other: int) -> None:
        """Issue 11: logging in again takes the session over (the ghost-session fix)."""
        conn = self.conns.get(slot)
        name = NAMES[other]
        if conn is None or conn.user is not None or name not in self._members():
            return
        old_slot = next(s for s, c in self.conns.items() if c.user == name)
        old = self.conns.pop(old_slot)
        conn.client.login(name, PASSWORD)
        conn.user = name
        self._replaced(old)

    def _replaced(self, old: Conn) -> None:
        # The invariant synced the old connection after the last step, so it had nothing
        # unsent: it gets ERR replaced and is closed, and the new one starts afresh.
        reply = old.client.recv(3.0)
        assert isinstance(reply, p.Err) and reply.code == "replaced", reply
        with pytest.raises(ConnectionClosed):
            old.client.recv_all(3.0)
        old.client.close()

    @rule(slot=SLOTS)
    def say_before_login(self, slot: int) -> None:
        conn = self.conns.get(slot)
        if conn is None or conn.user is not None:
            return
        conn.client.say("anyone?")
        reply = conn.client.recv(2.0)
        assert reply == p.Err("not-logged-in", "LOGIN <user> <password> first")

    @precondition(lambda self: self._any(logged_in=True))
    @rule(data=st.data(), text=TEXT)
    def say(self, data: st.DataObject, text: str) -> None:
        conn = self.conns[self._pick(data, logged_in=True)]
        assert conn.user is not None
        self.serial += 1
        line = f"{self.serial} {text}"
        conn.client.say(line)
        message = p.Msg(conn.user, line)
        # Once the speaker's echo is back, the room has queued it for every member.
        deadline = time.monotonic() + 3.0
        while message not in conn.got_msgs:
            assert time.monotonic() < deadline, "no echo"
            event = conn.client.recv(0.5)
            if event is not None:
                conn.absorb([event])
        for member in self._members().values():
            member.expected_msgs.append(message)

    @precondition(lambda self: self._any(logged_in=True))
    @rule(data=st.data(), to=SLOTS, text=TEXT)
    def tell(self, data: st.DataObject, to: int, text: str) -> None:
        conn = self.conns[self._pick(data, logged_in=True)]
        assert conn.user is not None
        name = NAMES[to]
        recipient = self._members().get(name)
        if recipient is None:
            with pytest.raises(ChatError) as info:
                conn.client.tell(name, text)
            assert info.value.code == "no-such-user"
        else:
            conn.client.tell(name, text)
            recipient.expected_privs.append(p.Priv(conn.user, text))

    @precondition(lambda self: self._any(logged_in=True))
    @rule(data=st.data())
    def who(self, data: st.DataObject) -> None:
        conn = self.conns[self._pick(data, logged_in=True)]
        assert conn.client.who() == sorted(self._members())

    @precondition(lambda self: self._any(logged_in=None))
    @rule(data=st.data())
    def quit(self, data: st.DataObject) -> None:
        conn = self.conns.pop(self._pick(data, logged_in=None))
        conn.client.quit()
        if conn.user is not None:
            self._wait_gone(conn.user)

    @precondition(lambda self: self._any(logged_in=None))
    @rule(data=st.data())
    def vanish(self, data: st.DataObject) -> None:
        """Abrupt disconnect: RST, no QUIT, no TLS close_notify."""
        conn = self.conns.pop(self._pick(data, logged_in=None))
        raw = socket.socket(fileno=conn.client.sock.detach())
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        if conn.user is not None:
            self._wait_gone(conn.user)

    # -- the promise ---------------------------------------------------------------------

    @invariant()
    def members_got_exactly_the_room_since_they_joined(self) -> None:
        for conn in self.conns.values():
            if conn.user is None:
                continue
            conn.sync()
            assert conn.got_msgs == conn.expected_msgs, conn.user
            assert conn.got_privs == conn.expected_privs, conn.user

    @invariant()
    def server_counts_match(self) -> None:
        assert self.server.room.names() == sorted(self._members())

    def teardown(self) -> None:
        for conn in self.conns.values():
            conn.client.close()
        self.server.close()
        assert self.server.client_count == 0


def test_room_order_and_delivery_state_machine(tmp_path: Path) -> None:
    create_lab_certs(tmp_path / "certs")
    store = UserStore(tmp_path / "users.json", n=2**10, r=8, p=1)
    for name in NAMES:
        store.add(name, PASSWORD)
    ChatRoom.root = tmp_path
    ChatRoom.store = store
    run_state_machine_as_test(
        ChatRoom,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
