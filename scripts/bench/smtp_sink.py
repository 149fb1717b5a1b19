"""Discarding SMTP sink for `deno task bench` (Debian package python3-aiosmtpd).

Usage: /usr/bin/python3 smtp_sink.py [CERT KEY]
Listens on 127.0.0.1 (port chosen by the kernel) and prints "PORT <n>"; with CERT and KEY it offers STARTTLS.
Each accepted message is discarded and reported as "MSG <unix time in ms> <subject>" on stdout.
Stops when its standard input closes.
"""
import asyncio
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP


class Handler:
    async def handle_DATA(self, server, session, envelope):
        now = time.time() * 1000.0
        subject = ""
        for line in envelope.content.split(b"\r\n"):
            if not line:
                break
            if line[:8].lower() == b"subject:":
                subject = line[8:].strip().decode("utf-8", "replace")
        print("MSG %.1f %s" % (now, subject), flush=True)
        return "250 2.0.0 OK"


async def main():
    kw = dict(hostname="sink.bench", enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)
    if len(sys.argv) >= 3:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        kw["tls_context"] = ctx
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), **kw), "127.0.0.1", 0)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
