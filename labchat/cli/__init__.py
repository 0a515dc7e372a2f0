"""``labchat ...``: the command line. Each subcommand is a thin shell around the package.

==============  ===========================================================================
``main``        the parser: every subcommand, even one whose module fails to import
``errors``      the one error path: one ``labchat: error:`` line, exit 2 usage / 1 runtime
``serve``       ``labchat serve``
``chat``        ``labchat chat``
``admin``       ``labchat init``, ``certs``, ``adduser``, ``passwd``, ``deluser``, ``users``
``capture``     ``labchat capture``, and ``python -m labchat.capture.network``
``inspect``     ``labchat inspect``
``demo``        ``labchat demo``
``classroom``   ``labchat doctor``, ``lab``, ``student-edition``, ``check``
``common``      options and the password prompt several subcommands share
==============  ===========================================================================

The console script is ``labchat = "labchat.cli:main"``; ``python -m labchat`` runs the same.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
