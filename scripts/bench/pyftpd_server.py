"""pyftpdlib peer for `deno task bench`: one user with full access to ROOT, logging at WARNING only.

Usage: /usr/bin/python3 pyftpd_server.py ROOT USER PASSWORD
Prints "PORT <n>" once listening on 127.0.0.1 (port chosen by the kernel); stops on SIGTERM.
Debian package: python3-pyftpdlib (uses sendfile(2) for RETR, as shipped).
"""
import logging
import signal
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer

root, user, password = sys.argv[1:4]
config_logging(level=logging.WARNING)
auth = DummyAuthorizer()
auth.add_user(user, password, root, perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = auth
server = FTPServer(("127.0.0.1", 0), handler)
server.max_cons = 1024
server.max_cons_per_ip = 0
signal.signal(signal.SIGTERM, lambda *_: server.close_all())
print("PORT %d" % server.socket.getsockname()[1], flush=True)
try:
    server.serve_forever(handle_exit=False)
except (KeyboardInterrupt, OSError):
    pass
