"""labchat.accounts: the demo accounts file and the box `labchat init` prints."""

from __future__ import annotations

import stat

from labchat.accounts import (
    accounts_box,
    new_password,
    read_accounts,
    update_accounts,
    write_accounts,
)


def test_accounts_file_round_trip_mode_and_updates(tmp_path) -> None:
    path = tmp_path / "certs" / "demo-accounts.txt"
    assert read_accounts(path) == {}
    update_accounts(path, "alice", None)  # nothing to drop: no file appears
    assert not path.exists()
    write_accounts(path, {"alice": "pw-a", "bob": "pw-b"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[1:] == ["alice  pw-a", "bob    pw-b"]
    update_accounts(path, "bob", "pw-b2")
    update_accounts(path, "alice", None)
    assert read_accounts(path) == {"bob": "pw-b2"}
    assert not list(tmp_path.glob("certs/.*.tmp"))


def test_accounts_box_lines_up() -> None:
    box = accounts_box({"alice": "x" * 12, "bob": "y" * 12}, path="certs/demo-accounts.txt")
    lines = box.splitlines()
    assert len({len(line) for line in lines}) == 1  # a rectangle
    assert lines[0] == lines[-1] and set(lines[0]) == {"+", "-"}
    assert "|   alice  xxxxxxxxxxxx" in box and "(also in certs/demo-accounts.txt)" in box
    assert box.isascii()  # any console encoding can print it


def test_new_password_is_random_and_long_enough() -> None:
    from labchat.auth import validate_password

    first, second = new_password(), new_password()
    assert first != second and len(first) == 12
    validate_password(first)


def test_write_accounts_never_follows_a_planted_temporary_file(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    path = tmp_path / "demo-accounts.txt"
    (tmp_path / ".demo-accounts.txt.tmp").symlink_to(victim)  # the old fixed temporary name
    write_accounts(path, {"alice": "pw-a"})
    assert victim.read_text() == "not yours\n"
    assert read_accounts(path) == {"alice": "pw-a"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".demo-accounts.txt.tmp", "demo-accounts.txt", "victim",
    ]  # fmt: skip
