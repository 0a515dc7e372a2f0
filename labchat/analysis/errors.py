"""The one exception analysis raises."""

__all__ = ["AnalysisError"]


class AnalysisError(Exception):
    """The file cannot be analysed at all (missing, unreadable, not a pcap/pcapng capture)."""
