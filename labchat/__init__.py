"""labchat: an educational protocol lab.

A small TLS chat (server, client, login, a lab CA) over blocking sockets, which learners run,
capture with scapy, plot with matplotlib and take apart in Jupyter notebooks.

The names most notebooks need are re-exported here; everything else lives in its module.
"""

import logging

from .auth import Authenticator, UserStore
from .certs import CA, create_lab_certs
from .client import ChatError, Client, ConnectionClosed, LoginError, format_event
from .protocol import escape_controls
from .server import Limits, Server

__version__ = "0.1.0"

# A library logs, the application decides where logs go: without this, Python's last-resort
# handler would print the server's warnings on stderr of every notebook cell that runs one.
logging.getLogger("labchat").addHandler(logging.NullHandler())

__all__ = [
    "CA",
    "Authenticator",
    "ChatError",
    "Client",
    "ConnectionClosed",
    "Limits",
    "LoginError",
    "Server",
    "UserStore",
    "create_lab_certs",
    "escape_controls",
    "format_event",
]
