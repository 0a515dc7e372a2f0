"""The server's command rules (labchat.commands, labchat.room) without a single socket.

Members are plain objects that record what the room queued for them and how often it woke
them; replies go to a list. The same rules run in the server (tests/test_server.py drives
them over real sockets).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labchat import protocol as p
from labchat.auth import Authenticator, LoginThrottle, UserStore
from labchat.commands import Commands, Hangup
from labchat.room import Room
from labchat.server import Limits, SessionTimers

PASSWORD = "correct horse"
FAST_HASH = {"n": 2**4, "r": 1, "p": 1}  # the rules are under test, not scrypt


class FakeMember:
    """A room member that keeps its queued lines as parsed server messages."""

    def __init__(self, source: str = "127.0.0.1", port: int = 40000) -> None:
        self.user: str | None = None
        self.operator = False
        self.cert_name: str | None = None
        self.source = source
        self.port = port
        self.received: list[p.ServerMessage] = []
        self.wakes = 0
        self.closed: tuple[str, p.ServerMessage | None] | None = None

    def queue(self, data: bytes, *, force: bool = False) -> None:
        for line in data.decode("utf-8").splitlines():
            self.received.append(p.parse_server_line(line))

    def hand_over(self, farewell: p.ServerMessage) -> bytes:
        # Nothing is ever written here: everything queued is still unsent.
        unsent = p.encode_all(self.received)
        self.received = []
        self.close_soon("replaced", farewell)
        return unsent

    def close_soon(self, reason: str, farewell: p.ServerMessage | None) -> None:
        self.closed = (reason, farewell)

    def wake(self) -> None:
        self.wakes += 1

    def label(self) -> str:
        return f"{self.user or '-'}@{self.source}:{self.port}"

    def tls_summary(self) -> str:
        return "plaintext"

    def take(self) -> list[p.ServerMessage]:
        got, self.received = self.received, []
        return got


class Harness:
    """A room, its commands and an authenticator over a users file, with a fake clock."""

    def __init__(self, tmp: Path) -> None:
        self.now = 1000.0
        store = UserStore(tmp / "users.json", **FAST_HASH)
        for name in ("alice", "bob", "carol"):
            store.add(name, PASSWORD)
        store.add("teacher", PASSWORD, operator=True)
        self.throttle = LoginThrottle(clock=lambda: self.now)
        self.room = Room()
        self.auth = Authenticator(store, throttle=self.throttle)
        self.commands = Commands(self.room, self.auth, clock=lambda: self.now)

    def run(self, member: FakeMember, command: p.Command) -> tuple[list, Hangup | None]:
        """Handle *command*; return (replies, hangup). Replies go into the member's own
        outbox in the server; here they are collected separately to tell them apart."""
        replies: list[p.ServerMessage] = []
        hangup = self.commands.handle(member, command, replies.append)
        return replies, hangup

    def line(self, member: FakeMember, raw: bytes) -> list[p.ServerMessage]:
        replies: list[p.ServerMessage] = []
        for event in p.LineReader().feed(raw):
            assert self.commands.handle_frame(member, event, replies.append) is None
        return replies

    def login(self, user: str, source: str = "127.0.0.1") -> FakeMember:
        member = FakeMember(source)
        replies, hangup = self.run(member, p.Login(user, PASSWORD))
        assert (replies, hangup) == ([], None)
        assert member.take() == [p.Ok(user)]  # queued by the room, under its lock
        for other in self.others(member):
            other.take()  # the JOIN
        return member

    def others(self, member: FakeMember) -> list[FakeMember]:
        found = [self.room.member(name) for name in self.room.names()]
        return [m for m in found if isinstance(m, FakeMember) and m is not member]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# --------------------------------------------------------------------------- login


def test_Commands_login_joins_the_room_and_tells_the_others(h: Harness) -> None:
    alice = h.login("alice")
    alice.wakes = 0
    bob = FakeMember()
    h.run(bob, p.Login("bob", PASSWORD))
    assert bob.user == "bob"
    assert bob.take() == [p.Ok("bob")]
    assert alice.take() == [p.Join("bob")]
    # The newcomer's own thread writes its OK: only the others are woken.
    assert (alice.wakes, bob.wakes) == (1, 0)
    assert h.room.names() == ["alice", "bob"]


@pytest.mark.parametrize(
    "user, password",
    [("alice", "wrong password"), ("mallory", PASSWORD), ("bad/name", PASSWORD)],
    ids=["wrong-password", "unknown-user", "invalid-name"],
)
def test_Commands_failed_logins_look_identical(h: Harness, user: str, password: str) -> None:
    member = FakeMember()
    replies, _ = h.run(member, p.Login(user, password))
    assert replies == [p.Err("auth", "invalid user name or password")]
    assert member.user is None and member.received == []


def test_Commands_login_twice_on_one_connection(h: Harness) -> None:
    alice = h.login("alice")
    replies, _ = h.run(alice, p.Login("bob", PASSWORD))
    assert replies == [p.Err("syntax", "already logged in as alice")]


def test_Commands_throttled_login_is_refused_without_a_check(h: Harness) -> None:
    member = FakeMember()
    for _ in range(5):
        h.run(member, p.Login("alice", "wrong password"))
    replies, _ = h.run(member, p.Login("alice", PASSWORD))
    assert replies == [p.Err("throttled", "too many failed logins; retry in 30 s")]
    h.now += 31
    replies, _ = h.run(member, p.Login("alice", PASSWORD))
    assert replies == [] and member.user == "alice"


# --------------------------------------------------------------------------- room commands


def test_Commands_need_a_login_first(h: Harness) -> None:
    member = FakeMember()
    for command in (p.Say("hi"), p.Tell("bob", "hi"), p.Who()):
        replies, _ = h.run(member, command)
        assert replies == [p.Err("not-logged-in", "LOGIN <user> <password> first")]
    assert h.run(member, p.Ping("x")) == ([p.Pong("x")], None)
    assert h.run(member, p.Pong("x")) == ([], None)


def test_Commands_say_reaches_everyone_in_one_order(h: Harness) -> None:
    alice, bob = h.login("alice"), h.login("bob")
    alice.take()
    alice.wakes = bob.wakes = 0
    for i in range(3):
        h.run(alice, p.Say(f"line {i}"))
        h.run(bob, p.Say(f"reply {i}"))
    expected = [
        p.Msg(user, f"{what} {i}")
        for i in range(3)
        for user, what in (("alice", "line"), ("bob", "reply"))
    ]
    assert alice.take() == expected
    assert bob.take() == expected
    assert h.room.accepted == 6
    # Nobody is woken for its own line: 3 wake-ups each, all for the other's lines.
    assert (alice.wakes, bob.wakes) == (3, 3)


def test_Commands_tell_and_who(h: Harness) -> None:
    alice, bob = h.login("alice"), h.login("bob")
    alice.take()
    assert h.run(alice, p.Tell("bob", "psst")) == ([p.Ok()], None)
    assert bob.take() == [p.Priv("alice", "psst")]
    assert alice.take() == []
    replies, _ = h.run(alice, p.Tell("carol", "hello?"))
    assert replies == [p.Err("no-such-user", "carol is not logged in")]
    assert h.run(bob, p.Who()) == ([p.Users(("alice", "bob"))], None)


def test_Commands_quit_hangs_up_with_bye(h: Harness) -> None:
    alice = h.login("alice")
    assert h.run(alice, p.Quit()) == ([], Hangup("quit", p.Bye("see you")))


def test_Commands_leave_tells_the_others(h: Harness) -> None:
    alice, bob = h.login("alice"), h.login("bob")
    alice.take()
    h.room.leave(bob)
    assert alice.take() == [p.Leave("bob")]
    h.room.leave(bob)  # twice is harmless
    assert alice.take() == [] and h.room.names() == ["alice"]


# --------------------------------------------------------------------------- takeover


def test_Commands_login_again_takes_the_session_over(h: Harness) -> None:
    ghost, bob = h.login("alice", "10.0.0.21"), h.login("bob")
    for i in range(3):
        h.run(bob, p.Say(f"line {i}"))  # queued for the ghost, never written
    bob.take()
    back = FakeMember("10.0.0.22", 50000)
    replies, _ = h.run(back, p.Login("alice", PASSWORD))
    assert replies == []
    got = back.take()
    assert got[0] == p.Ok("alice (took over from alice@10.0.0.21:40000; 3 unsent lines follow)")
    assert got[1:] == [p.Msg("bob", f"line {i}") for i in range(3)]  # nothing lost
    assert ghost.closed == (
        "replaced",
        p.Err("replaced", "alice logged in again on another connection"),
    )
    assert bob.take() == []  # no LEAVE, no JOIN: alice never left
    assert h.room.names() == ["alice", "bob"] and h.room.member("alice") is back
    # The ghost can say nothing any more, even if a line of it was still being handled.
    h.run(ghost, p.Say("from the grave"))
    assert bob.take() == [] and h.room.accepted == 3
    # What the old connection does when it ends does not touch the new one.
    h.room.leave(ghost)
    assert h.room.names() == ["alice", "bob"] and bob.take() == []


# --------------------------------------------------------------------------- moderation


def test_Commands_who_shows_operators_with_at(h: Harness) -> None:
    h.login("teacher"), h.login("alice")
    bob = h.login("bob")
    assert h.run(bob, p.Who()) == ([p.Users(("alice", "bob", "@teacher"))], None)


@pytest.mark.parametrize(
    "command",
    [p.Kick("alice"), p.Mute("alice", 10), p.Unlock("alice"), p.ListThrottled()],
    ids=repr,
)
def test_Commands_moderation_is_for_operators_only(h: Harness, command: p.Command) -> None:
    h.login("alice")
    bob = h.login("bob")
    replies, _ = h.run(bob, command)
    assert len(replies) == 1 and replies[0].code == "forbidden"  # type: ignore[union-attr]
    assert h.room.names() == ["alice", "bob"]
    assert h.run(FakeMember(), command)[0][0].code == "not-logged-in"  # type: ignore[union-attr]


def test_Commands_kick(h: Harness) -> None:
    teacher, alice, bob = h.login("teacher"), h.login("alice"), h.login("bob")
    assert h.run(teacher, p.Kick("bob", "spamming")) == ([p.Ok("bob kicked")], None)
    assert bob.closed == ("kicked", p.Err("kicked", "kicked by teacher: spamming"))
    assert alice.take() == [p.Leave("bob")] and teacher.take() == [p.Leave("bob")]
    h.run(bob, p.Say("one more"))  # a line that was already on its way: not relayed
    assert alice.take() == []
    replies, _ = h.run(teacher, p.Kick("bob"))
    assert replies == [p.Err("no-such-user", "bob is not logged in")]
    h.login("bob")  # a kick is not a ban


def test_Commands_mute_and_unmute(h: Harness) -> None:
    teacher, alice = h.login("teacher"), h.login("alice")
    assert h.run(teacher, p.Mute("alice", 60)) == ([p.Ok("alice muted for 60 s")], None)
    h.now += 10
    for command in (p.Say("hi"), p.Tell("teacher", "please")):
        assert h.run(alice, command) == ([p.Err("muted", "you are muted for another 50 s")], None)
    assert teacher.take() == []
    # Logging in again does not end it.
    again = FakeMember("10.0.0.9")
    h.run(again, p.Login("alice", PASSWORD))
    assert h.run(again, p.Say("hi"))[0][0].code == "muted"  # type: ignore[union-attr]
    h.now += 51
    h.run(again, p.Say("back"))
    assert teacher.take()[-1] == p.Msg("alice", "back")
    h.run(teacher, p.Mute("alice"))
    assert h.run(again, p.Say("x"))[0] == [p.Err("muted", "you are muted for another 300 s")]
    assert h.run(teacher, p.Mute("alice", 0)) == ([p.Ok("alice unmuted")], None)
    assert h.run(again, p.Say("free")) == ([], None)
    replies, _ = h.run(teacher, p.Mute("nobody"))
    assert replies == [p.Err("no-such-user", "nobody is not logged in")]


def test_Commands_unlock_and_throttled(h: Harness) -> None:
    teacher = h.login("teacher")
    guesser = FakeMember("10.0.0.66")
    for _ in range(5):
        h.run(guesser, p.Login("alice", "wrong password"))
    for _ in range(5):
        h.run(guesser, p.Login("no/such/name", "wrong password"))
    h.now += 2
    assert h.run(teacher, p.ListThrottled()) == (
        [p.Throttled(("alice@10.0.0.66=28", "*@10.0.0.66=28"))],
        None,
    )
    assert h.run(guesser, p.Login("alice", PASSWORD))[0][0].code == "throttled"  # type: ignore[union-attr]
    replies, _ = h.run(teacher, p.Unlock("alice"))
    assert replies == [p.Ok("alice unlocked (1 cool-downs cleared)")]
    assert h.run(guesser, p.Login("alice", PASSWORD)) == ([], None)
    assert h.run(teacher, p.ListThrottled()) == ([p.Throttled(("*@10.0.0.66=28",))], None)
    replies, _ = h.run(teacher, p.Unlock("@10.0.0.66"))
    assert replies == [p.Ok("@10.0.0.66 unlocked (2 cool-downs cleared)")]  # pair, bucket
    assert h.run(teacher, p.ListThrottled()) == ([p.Throttled(())], None)


# --------------------------------------------------------------------------- mutual TLS


def test_Commands_require_cert_user(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import labchat.auth

    checks: list[str] = []
    real = labchat.auth.verify_password
    monkeypatch.setattr(
        labchat.auth, "verify_password", lambda r, pw: checks.append(pw) or real(r, pw)
    )
    commands = Commands(h.room, h.auth, require_cert_user=True)
    member = FakeMember()
    member.cert_name = "alice"
    replies: list[p.ServerMessage] = []
    commands.handle(member, p.Login("bob", PASSWORD), replies.append)
    assert replies == [p.Err("auth", "your client certificate is for alice; log in as that")]
    assert checks == []  # refused before any hash
    commands.handle(member, p.Login("alice", PASSWORD), replies.append)
    assert member.user == "alice" and len(checks) == 1


# --------------------------------------------------------------------------- framing


def test_Commands_handle_frame_answers_bad_lines(h: Harness) -> None:
    member = FakeMember()
    too_long = b"SAY " + b"x" * p.MAX_LINE_BYTES + b"\n"
    assert h.line(member, too_long) == [
        p.Err("too-long", f"lines are limited to {p.MAX_LINE_BYTES} bytes")
    ]
    assert h.line(member, b"SAY caf\xe9\n") == [p.Err("encoding", "lines must be UTF-8")]
    assert h.line(member, b"FROB\n") == [
        p.Err("unknown-command", "'FROB' is not a labchat/1 command")
    ]
    assert h.line(member, b"ping 7\r\n") == [p.Pong("7")]


_lines = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).map(
    lambda t: t.replace("\n", "")
)
_verbs = st.sampled_from(["SAY ", "TELL bob ", "TELL alice ", "say ", "PING ", "WHO", ""])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(verb=_verbs, text=_lines)
def test_Commands_no_accepted_line_relays_a_forbidden_code_point(
    h: Harness, verb: str, text: str
) -> None:
    # Whatever alice sends, nothing bob (or alice) is given carries a forbidden code point;
    # a line that holds one gets ERR encoding and nothing of it reaches anybody.
    if h.room.member("alice") is None:
        h.login("alice"), h.login("bob")
    alice, bob = h.room.member("alice"), h.room.member("bob")
    assert isinstance(alice, FakeMember) and isinstance(bob, FakeMember)
    alice.take(), bob.take()
    replies = h.line(alice, (verb + text).encode("utf-8", "surrogatepass") + b"\n")
    relayed = bob.take() + alice.take()
    for message in replies + relayed:
        assert p.find_forbidden(p.encode(message).decode("utf-8")[:-1]) is None
    framed = (verb + text).removesuffix("\r")  # LineReader takes a CR before the LF
    if p.find_forbidden(framed) is not None:
        assert [r.code for r in replies if isinstance(r, p.Err)] == ["encoding"]
        assert relayed == []


# --------------------------------------------------------------------------- the loop's timers


def test_SessionTimers_earliest_deadline_first() -> None:
    limits = Limits(login_timeout=30, idle_timeout=300, ping_timeout=20, line_timeout=10)
    timers = SessionTimers(limits, start=100.0)
    assert timers.next(logged_in=False) == (130.0, "login")
    assert timers.next(logged_in=True) == (400.0, "idle")
    timers.input(105.0, in_line=True)  # half a line arrived
    assert timers.next(logged_in=True) == (115.0, "line")
    timers.input(108.0, in_line=True)  # more of the same line: its clock keeps running
    assert timers.next(logged_in=True) == (115.0, "line")
    timers.input(109.0, in_line=False)
    assert timers.next(logged_in=True) == (409.0, "idle")
    timers.ping_sent = 409.0
    assert timers.next(logged_in=True) == (429.0, "ping")
    timers.input(410.0, in_line=False)  # any input answers the PING
    assert timers.next(logged_in=True) == (710.0, "idle")


def test_SessionTimers_hold_pauses_line_and_idle() -> None:
    timers = SessionTimers(Limits(line_timeout=10, idle_timeout=300), start=0.0)
    timers.input(1.0, in_line=True)
    timers.hold(50.0)  # flood control held lines back until now: not the client's fault
    assert timers.next(logged_in=True) == (60.0, "line")
    assert timers.last_input == 50.0
