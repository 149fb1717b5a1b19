"""Runs a server for `deno task bench` under a Linux child subreaper (prctl PR_SET_CHILD_SUBREAPER).

vsftpd forks two processes per session and the session process can outlive its parent; without a subreaper it
is reparented to PID 1 and its CPU time vanishes from the server's process tree. Here such orphans are
reparented to this process, which reaps them, so their time lands in this process's cutime/cstime and the bench
counts it. This process itself only sleeps in wait().

Usage: /usr/bin/python3 subreaper.py PROGRAM [ARG ...]
Prints "CHILD <pid>" (the server's PID). On SIGTERM it stops the server, then its orphaned sessions, and exits.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d" % ctypes.get_errno())

child = os.fork()
if child == 0:
    os.execv(sys.argv[1], sys.argv[1:])


def children():
    try:
        with open("/proc/self/task/%d/children" % os.getpid()) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def forward(*_):
    try:
        os.kill(child, signal.SIGTERM)
    except ProcessLookupError:
        pass


signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
print("CHILD %d" % child, flush=True)

while True:
    try:
        pid, _ = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        break

# The server is gone: stop the sessions it left behind (all started by this bench run), then reap them.
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    left = children()
    if not left:
        break
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 1 else signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
