"""labchat: an educational protocol lab (TLS chat over blocking sockets, captured and plotted)."""

__version__ = "0.1.0"
