"""TLS on a connection's reassembled streams: records, handshake messages, keys, decryption.

``session`` cuts records and messages and follows the handshake; ``handshake`` decodes the
messages' fields; ``keylog`` reads NSS key logs; ``crypto`` derives keys and opens records;
``registry`` holds the IANA names.
"""

from .keylog import KeyLog
from .session import TLSDecoder

__all__ = ["KeyLog", "TLSDecoder"]
