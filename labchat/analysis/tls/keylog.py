"""NSS key log files (SSLKEYLOGFILE), read and checked line by line.

Format (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/ and
draft-ietf-tls-keylogfile): ``LABEL <client random, 64 hex digits> <secret, hex>`` per line;
``#`` starts a comment. TLS 1.2 needs ``CLIENT_RANDOM`` (the 48-byte master secret); TLS 1.3
the ``*_TRAFFIC_SECRET*`` lines. Every key is found by the ClientHello's random, so one key
log can serve many connections, and a connection's keys never open another's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KeyLog", "LABELS"]

LABELS = frozenset(
    {
        "CLIENT_RANDOM",  # TLS 1.2 and older: the master secret
        "CLIENT_EARLY_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EARLY_EXPORTER_SECRET",
        "EXPORTER_SECRET",
        "RSA",  # pre-master secret by encrypted pre-master: valid, not used here
    }
)
_MAX_REPORTED = 3


@dataclass
class KeyLog:
    """Secrets by client random, and what did not parse.

    ``secrets[client_random][label]`` is the secret; ``bad_lines`` the 1-based numbers of the
    lines that are not NSS key-log lines (comments and blank lines are fine).
    """

    secrets: dict[bytes, dict[str, bytes]] = field(default_factory=dict)
    lines: int = 0
    valid: int = 0
    bad_lines: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path) -> KeyLog:
        """Read a key log file (raises OSError when it cannot be read)."""
        log = cls()
        log.add(Path(path).read_bytes(), str(path))
        return log

    def add(self, text: bytes, source: str) -> None:
        """Add the lines of one key log (a file, or a pcapng's Decryption Secrets Block)."""
        self.sources.append(source)
        first = self.lines
        for number, raw in enumerate(text.splitlines(), start=first + 1):
            self.lines += 1
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            parts = line.split()
            try:
                label = parts[0].decode("ascii")
                # A well-formed line with a label we do not use (OpenSSL writes
                # CLIENT_TRAFFIC_SECRET_N after a key update) is still a key-log line.
                if len(parts) != 3 or not label.replace("_", "").isalnum() or not label.isupper():
                    raise ValueError(label)
                key, secret = bytes.fromhex(parts[1].decode()), bytes.fromhex(parts[2].decode())
                if label != "RSA" and len(key) != 32:
                    raise ValueError("client random is not 32 bytes")
            except (ValueError, UnicodeDecodeError):
                self.bad_lines.append(number)
                continue
            self.valid += 1
            self.secrets.setdefault(key, {})[label] = secret

    def for_client_random(self, random: bytes) -> dict[str, bytes]:
        """The secrets logged for one handshake (empty when the log has none)."""
        return self.secrets.get(random, {})

    def problem(self) -> str:
        """A one-line report of the lines that are not key-log lines ("" when all are)."""
        if not self.bad_lines:
            return ""
        shown = ", ".join(str(n) for n in self.bad_lines[:_MAX_REPORTED])
        more = " ..." if len(self.bad_lines) > _MAX_REPORTED else ""
        return (
            f"key log: {len(self.bad_lines)} of {self.lines} lines are not NSS key-log lines "
            f"(line {shown}{more}); {self.valid} usable"
        )
