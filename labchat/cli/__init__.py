"""``labchat ...``: the command line. Each subcommand is a thin shell around the package.

==============  ===========================================================================
``main``        the parser, and the one place errors are printed and exit codes decided
``serve``       ``labchat serve``
``chat``        ``labchat chat``
``admin``       ``labchat init``, ``certs``, ``adduser``, ``deluser``, ``users``
``capture``     ``labchat capture``, and ``python -m labchat.capture.network``
``inspect``     ``labchat inspect``
``demo``        ``labchat demo``
``common``      options and the password prompt several subcommands share
==============  ===========================================================================

The console script is ``labchat = "labchat.cli:main"``; ``python -m labchat`` runs the same.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
