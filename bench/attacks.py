"""The classroom attacks of issue 11, rerun against `labchat serve` with its defaults.

    .venv/bin/python -m bench.attacks            # about 4 minutes; table on stdout
    .venv/bin/python -m bench.attacks --quick    # fewer logins, a shorter guessing window
    .venv/bin/python -m bench.run --only attacks # the same, as a part of `make bench`

Each attack gets a fresh `labchat serve` (default limits, pinned to one CPU, as a teacher runs
it) and attackers in processes of their own, each on its own 127.0.0.x address. Meanwhile a
classmate at 127.0.0.250 connects (TLS, X25519), logs in with a real scrypt record (the
default N=2**14, r=8, p=5), says a line, sees it come back and quits; the table gives how
long the login took (median and worst of several) and the whole round trip.

Guesses per hour are measured over a bounded window and extrapolated with the design's
formula (`LoginThrottle.max_guesses`): one guesser against one account from one address, and
one address spraying made-up names. Writes bench/results/latest-attacks.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import HOST, RESULTS, free_port, machine, raise_nofile, stop, wait_port
from labchat.auth import UserStore
from labchat.certs import create_lab_certs
from labchat.client import ChatError, Client, LoginError
from labchat.limits import Limits
from labchat.tls import client_context

CLASSMATE = "127.0.0.250"
PASSWORD = "classmate password"


def log(*args: object) -> None:
    print(*args, flush=True)


# --------------------------------------------------------------------------- the server


class Setup:
    """Certificates and a users file with one real-cost account, in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.certs = create_lab_certs(root / "certs")
        self.ca = str(self.certs.ca_cert)
        self.users = root / "users.json"
        store = UserStore(self.users)  # the default scrypt cost, as `labchat adduser` makes
        store.add("classmate", PASSWORD)
        store.add("teacher", PASSWORD)


@contextlib.contextmanager
def serve(setup: Setup, root: Path | None = None) -> Iterator[int]:
    """`labchat serve` with every default limit; yields its port.

    *root*: run the ``labchat`` package of another checkout (e.g. /work/main, to measure
    before and after on the same machine at the same time); `python -m` puts the working
    directory first on sys.path.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "labchat", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--certs", str(setup.certs.directory), "--users", str(setup.users)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=root,
    )
    try:
        wait_port(port, timeout=60.0, proc=proc)  # a busy machine starts Python slowly
        yield port
    finally:
        stop(proc)


def classmate(port: int, ca: str) -> tuple[float, float]:
    """Connect, log in, say a line, get it back, quit: (login seconds, total seconds)."""
    start = time.monotonic()
    with Client(HOST, port, cafile=ca, timeout=60.0, source_address=(CLASSMATE, 0)) as client:
        client.login("classmate", PASSWORD)
        logged_in = time.monotonic()
        client.say("still here")
        while True:
            event = client.recv(60.0)
            if event is None or getattr(event, "text", None) == "still here":
                break
        client.quit()
    return logged_in - start, time.monotonic() - start


def measure(port: int, ca: str, rounds: int) -> dict:
    logins, totals, errors = [], [], []
    for _ in range(rounds):
        try:
            login, total = classmate(port, ca)
        except (OSError, ChatError) as exc:  # ERR busy, a refused login, a reset, a timeout
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        logins.append(login)
        totals.append(total)
        time.sleep(0.2)
    return {
        "rounds": rounds,
        "ok": len(logins),
        "errors": errors[:3],
        "login_median_ms": statistics.median(logins) * 1000 if logins else None,
        "login_max_ms": max(logins) * 1000 if logins else None,
        "total_median_ms": statistics.median(totals) * 1000 if totals else None,
    }


# --------------------------------------------------------------------------- attackers


def _address(n: int) -> str:
    return f"127.0.0.{10 + n}"


def slot_flood(port: int, ca: str, src: str, kind: str, target: int, stop) -> None:
    """Hold *target* connections that never log in; reopen every one the server closes."""
    ctx = client_context(cafile=ca)
    held: list[socket.socket] = []
    stop_at = time.monotonic() + 600  # a bound, whatever happens to the parent
    while not stop.is_set() and time.monotonic() < stop_at:
        for sock in [s for s in held if select.select([s], [], [], 0)[0]]:
            held.remove(sock)
            sock.close()
        while len(held) < target and not stop.is_set():
            try:
                sock = socket.create_connection((HOST, port), timeout=5, source_address=(src, 0))
                if kind == "tls":
                    sock = ctx.wrap_socket(sock, server_hostname=HOST)
                    sock.recv(4096)  # HELLO; then silence
                held.append(sock)
            except (OSError, ssl.SSLError):
                break  # refused: try again on the next round
        time.sleep(0.02)
    for sock in held:
        sock.close()


def replay(port: int, hello: bytes, first: int, count: int, done, stop) -> None:
    """*count* replayers (threads), each on its own address, replaying *hello* in a loop."""
    stop_at = time.monotonic() + 600

    def one(src: str) -> None:
        n = 0
        while not stop.is_set() and time.monotonic() < stop_at:
            try:
                with socket.create_connection(
                    (HOST, port), timeout=5, source_address=(src, 0)
                ) as sock:
                    sock.sendall(hello)
                    sock.recv(4096)  # the server's answer: its ServerHello, or an alert
            except OSError:
                pass
            n += 1
        with done.get_lock():
            done.value += n

    threads = [threading.Thread(target=one, args=(_address(first + i),)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def login_flood(port: int, ca: str, src: str, conns: int, done, stop) -> None:
    """*conns* connections from one address sending failed logins (made-up names)."""
    stop_at = time.monotonic() + 600

    def one(i: int) -> None:
        n = 0
        try:
            client = Client(HOST, port, cafile=ca, timeout=60.0, source_address=(src, 0))
        except OSError:
            return
        with client:
            while not stop.is_set() and time.monotonic() < stop_at:
                try:
                    client.login(f"nobody{i}x{n}", "wrong password")
                except LoginError:
                    pass
                except OSError:
                    break
                n += 1
        with done.get_lock():
            done.value += n

    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def guesser(port: int, ca: str, src: str, account: str | None, seconds: float, out, stop) -> None:
    """Guess as fast as the server lets us for *seconds*: against *account*, or (None)
    against made-up names. Reports (checked, throttled) through *out*."""
    checked = throttled = 0
    stop_at = time.monotonic() + seconds
    client = Client(HOST, port, cafile=ca, timeout=60.0, source_address=(src, 0))
    n = 0
    while time.monotonic() < stop_at and not stop.is_set():
        name = account or f"made-up-{n}"
        n += 1
        try:
            client.login(name, f"guess number {n}")
        except LoginError as exc:
            if exc.code == "throttled":
                throttled += 1
                # The reply says how long; a patient guesser comes back just then.
                wait = float(exc.text.rsplit("retry in ", 1)[-1].split()[0] or 1)
                time.sleep(min(max(wait, 0.05), stop_at - time.monotonic() + 0.01))
            elif exc.code == "auth":
                checked += 1  # the password was checked (and was wrong)
            # else: ERR timeout (login_timeout on this never-logged-in connection): the
            # next send fails and the guesser reconnects
        except OSError:  # the server ended the connection (login_timeout): reconnect
            client.close()
            client = Client(HOST, port, cafile=ca, timeout=60.0, source_address=(src, 0))
    client.close()
    out.put((checked, throttled))


_SPAWN = mp.get_context("spawn")  # a clean interpreter per attacker, no inherited threads


@contextlib.contextmanager
def attackers(targets: list[tuple[Callable, tuple]], wait: bool = False) -> Iterator[None]:
    """Run each (function, args) in a process of its own; *args* end with a stop event
    that leaving the block sets (unless *wait*: then the attackers end by themselves)."""
    procs = [_SPAWN.Process(target=fn, args=args, daemon=True) for fn, args in targets]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        if not wait:
            for _, args in targets:
                args[-1].set()
        for proc in procs:
            proc.join(120)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def ffdhe8192_hello() -> bytes:
    """A TLS 1.3 ClientHello offering only ffdhe8192, recorded from `openssl s_client`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to record an ffdhe8192 ClientHello")
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        client = subprocess.Popen(
            [openssl, "s_client", "-connect", f"{HOST}:{port}", "-tls1_3", "-groups", "ffdhe8192"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                record = b""
                while len(record) < 5 or len(record) < 5 + int.from_bytes(record[3:5], "big"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    record += chunk
        finally:
            client.kill()
            client.communicate(timeout=10)
    return record


# --------------------------------------------------------------------------- the runs


def run(
    quick: bool = False,
    log: Callable[..., None] = log,
    root: Path | None = None,
    guessing: bool = True,
) -> dict:
    """Every attack; returns the results (also what bench.run stores).

    Args:
        quick: fewer logins per attack and a shorter guessing window.
        log: where the progress lines go.
        root: measure another checkout's server (see `serve`).
        guessing: also measure guesses per hour (only meaningful for this checkout).
    """
    rounds = 5 if quick else 10
    window = 35.0 if quick else 95.0  # guessing: 5 now, 5 after 30 s, 5 after 90 s
    settle = 2.0 if quick else 3.0
    results: dict = {"rounds": rounds, "rows": []}
    hello = ffdhe8192_hello()
    tmp = Path(tempfile.mkdtemp(prefix="labchat-attacks-"))
    try:
        setup = Setup(tmp)

        def row(name: str, port: int, extra: dict | None = None) -> None:
            r = {"attack": name, **measure(port, setup.ca, rounds), **(extra or {})}
            results["rows"].append(r)
            log(
                f"  {name:44s} login median {r['login_median_ms'] or 0:7.1f} ms, worst "
                f"{r['login_max_ms'] or 0:7.1f} ms; round trip {r['total_median_ms'] or 0:7.1f}"
                f" ms; {r['ok']}/{rounds} ok" + (f" {r['errors']}" if r["errors"] else "")
            )

        with serve(setup, root) as port:
            row("none (baseline)", port)
        for kind in ("tcp", "tls"):
            with serve(setup, root) as port:
                args = (port, setup.ca, _address(1), kind, 600, _SPAWN.Event())
                with attackers([(slot_flood, args)]):
                    time.sleep(settle * 2)
                    row(f"slot flood, 600 {kind.upper()} connections, 1 address", port)
        for count in (8, 32):
            with serve(setup, root) as port:
                done = _SPAWN.Value("l", 0)
                halt = _SPAWN.Event()
                each = count // 4  # four processes of replaying threads
                with attackers(
                    [(replay, (port, hello, 20 + k * each, each, done, halt)) for k in range(4)]
                ):
                    time.sleep(settle)
                    start = done.value
                    t0 = time.monotonic()
                    row(f"ffdhe8192 ClientHello replay, {count} addresses", port)
                    rate = (done.value - start) / (time.monotonic() - t0)
                results["rows"][-1]["replays_per_s_so_far"] = round(rate)
        with serve(setup, root) as port:
            done = _SPAWN.Value("l", 0)
            flood = (port, setup.ca, _address(5), 16, done, _SPAWN.Event())
            with attackers([(login_flood, flood)]):
                time.sleep(settle)
                row("failed-login flood, 16 connections, 1 address", port)
            results["rows"][-1]["failed_logins"] = done.value

        if not guessing:
            return results
        log(f"\n  guessing for {window:.0f} s (an account from one address; one address's spray)")
        with serve(setup, root) as port:
            q = _SPAWN.Queue()
            with attackers(
                [
                    (guesser, (port, setup.ca, _address(6), "teacher", window, q, _SPAWN.Event())),
                    (guesser, (port, setup.ca, _address(7), None, window, q, _SPAWN.Event())),
                ],
                wait=True,
            ):
                pass
            got = sorted([q.get(timeout=10), q.get(timeout=10)])
        results["guesses"] = guesses(window, got)
        for line in results["guesses"]["lines"]:
            log("  " + line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def guesses(window: float, got: list[tuple[int, int]]) -> dict:
    """Measured checks over *window*, next to the formula for the window and for an hour."""
    throttle = Limits().throttle()
    formula_window = throttle.max_guesses(window)
    hour = throttle.max_guesses(3600)
    second_hour = tuple(b - a for a, b in zip(hour, throttle.max_guesses(7200), strict=True))
    # The account guesser is the one with fewer checks (the spray gets its whole budget).
    account, spray = got[0][0], got[1][0]
    lines = [
        f"per account from one address: {account} checked in {window:.0f} s "
        f"(formula {formula_window[0]}) -> {hour[0]} in the first hour, "
        f"{second_hour[0]}/h after",
        f"per address, any names:       {spray} checked in {window:.0f} s "
        f"(formula {formula_window[1]}) -> {hour[1]} in the first hour, "
        f"{second_hour[1]}/h after",
    ]
    return {
        "window_s": window,
        "account_checked": account,
        "source_checked": spray,
        "formula_window": formula_window,
        "first_hour": hour,
        "per_hour_after": second_hour,
        "lines": lines,
    }


def markdown(res: dict) -> str:
    """The results as the table docs/security.md shows (before/after when both were run)."""

    def why(error: str) -> str:
        kind, _, rest = error.partition(": ")
        return f"ERR {rest.split(':')[0]}" if kind in ("ChatError", "LoginError") else kind

    def cell(row: dict | None) -> str:
        if row is None:
            return ""
        if not row["ok"]:
            return f"**none of {row['rounds']} got in** ({why(row['errors'][0])})"
        failed = row["rounds"] - row["ok"]
        text = f"{row['login_median_ms']:.0f} / {row['login_max_ms']:.0f} ms"
        return text + (f", **{failed} of {row['rounds']} did not get in**" if failed else "")

    after = res["attacks"]["rows"]
    before = {r["attack"]: r for r in res.get("before", {}).get("rows", [])}
    head = "| attack | classmate's login, median / worst: after |"
    rule = "|---|---|"
    if before:
        head = "| attack | before issue 11 | after |"
        rule = "|---|---|---|"
    lines = [head, rule]
    for row in after:
        cells = [row["attack"], *([cell(before.get(row["attack"]))] if before else []), cell(row)]
        lines.append("| " + " | ".join(cells) + " |")
    g = res["attacks"].get("guesses")
    if g:
        lines += [
            "",
            f"Guesses checked in {g['window_s']:.0f} s: {g['account_checked']} against one "
            f"account from one address (formula {g['formula_window'][0]}), "
            f"{g['source_checked']} from one address over made-up names (formula "
            f"{g['formula_window'][1]}); per hour by the formula: {g['first_hour'][0]} then "
            f"{g['per_hour_after'][0]}/h per account and address, {g['first_hour'][1]} then "
            f"{g['per_hour_after'][1]}/h per address.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer logins, shorter guessing")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument(
        "--before",
        metavar="DIR",
        help="first run the attacks (not the guessing) against the labchat of checkout DIR, "
        "e.g. the commit before issue 11, for a before/after on the same machine",
    )
    args = ap.parse_args(argv)
    raise_nofile()
    m = machine()
    log(f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']}, load {m['loadavg_at_start']}")
    log("\n== Classroom attacks against labchat serve (defaults), a classmate logging in")
    t0 = time.monotonic()
    res = {"machine": m, "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    if args.before:
        log(f"\n-- before: the server of {args.before}")
        res["before"] = run(quick=args.quick, root=Path(args.before), guessing=False)
        log("\n-- after: this checkout")
    res["attacks"] = run(quick=args.quick)
    res["elapsed_s"] = time.monotonic() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest-attacks.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    log("\n" + markdown(res))
    log(f"\nwrote {out / 'latest-attacks.json'} in {res['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
