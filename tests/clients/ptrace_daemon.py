"""Run as another (unprivileged) user by tests/it/hardening.rs: starts
`assumed serve` as this user's child and reports what a process of the same
user can do to it, next to what it can do to an ordinary child (`sleep`):
PTRACE_ATTACH, and reading /proc/PID/environ (where the source secret is).

The daemon is this script's child so that Yama's ptrace_scope=1, where a
kernel has it, allows the attach: only the daemon's own flag can refuse it.

Usage: ptrace_daemon.py ASSUMED CONFIG PORT LOG. Prints one JSON object."""

import ctypes
import errno
import json
import os
import subprocess
import sys
import time
import urllib.request

PTRACE_ATTACH = 16
PTRACE_DETACH = 17

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def attach(pid):
    """'ok' if PTRACE_ATTACH succeeded (then detached), else the errno name."""
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        os.waitpid(pid, 0)
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return "readable" if f.read() else "empty"
    except PermissionError:
        return "EACCES"


def uid_line(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def about(pid):
    return {
        "attach": attach(pid),
        "environ": environ(pid),
        "status_owner": os.stat(f"/proc/{pid}/status").st_uid,
        "uid": uid_line(pid),
    }


def main():
    assumed, config, port, log = sys.argv[1:5]
    result = {"me": os.getuid()}
    control = subprocess.Popen(["sleep", "60"])
    try:
        result["control"] = about(control.pid)
    finally:
        control.kill()
        control.wait()

    with open(log, "wb") as log_file:
        daemon = subprocess.Popen(
            [assumed, "serve", "--config", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if daemon.poll() is not None:
                raise SystemExit(f"assumed exited with {daemon.returncode}")
            try:
                url = f"http://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("assumed was not ready in 20 s")
            time.sleep(0.02)
        result["daemon"] = about(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    print(json.dumps(result))


main()
