"""`labchat demo`: the headless end-to-end run (capture -> analysis -> ladder PNG)."""

import subprocess
import sys

import pytest

from labchat.demo import run_demo


@pytest.mark.capture
@pytest.mark.parametrize("mode", ["auto", "offline"])
def test_run_demo_writes_capture_keys_manifest_and_ladder(tmp_path, mode):
    result = run_demo(tmp_path / "demo", mode=mode)
    for name in ("capture.pcapng", "keys.log", "manifest.json", "ladder.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    assert (tmp_path / "demo" / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result.summary()
    assert f"capture mode: {result.capture.mode.name}" in summary
    assert result.connection.handshake().ok
    # The key log decrypts the chat: the login and the chat lines are readable.
    lines = [text for _, text in result.connection.app_lines()]
    assert any(line.startswith("LOGIN alice ") for line in lines), lines
    assert any(line.startswith("MSG alice ") for line in lines), lines
    assert "round trips before the first chat line: 1" in summary


@pytest.mark.capture
def test_labchat_demo_cli_prints_the_summary(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "labchat", "demo", "--out", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("capture mode: ")
    assert "TLS messages:" in out.stdout and "ClientHello" in out.stdout
    assert "decrypted labchat/1 lines:" in out.stdout
    assert out.stderr == ""
