"""Takes a role's credentials from the daemon, then checks that `status`
names this very process among the role's clients with all its requests.
Exits 0 once named, 3 if it never is.

    python3 took_role.py PORT TOKEN_FILE ROLE REQUESTS [--fork N]

REQUESTS fetches, each on a connection of its own that is closed as soon as
the answer is read, as a one-shot client's would be: once its socket is
gone the daemon can no longer find this process by it, so being named
means it was named while the answer was on its way (the first answer on a
connection waits for that). The wait for `status` below covers only the
moment the daemon may take to count the uses. With --fork N, N short-lived
child processes do that one after another, and the exit status is 0 only if
every one of them was named.
"""
import http.client
import json
import os
import sys
import time

NAMED_WITHIN = 20.0


def get(port, token, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Authorization": token})
    response = connection.getresponse()
    return connection, response.status, response.read()


def take(port, token, role, requests):
    for _ in range(requests):
        connection, status, body = get(port, token, f"/role/{role}")
        connection.close()
        if status != 200:
            print(f"GET /role/{role}: {status} {body!r}", file=sys.stderr)
            return 2
    deadline = time.monotonic() + NAMED_WITHIN
    while time.monotonic() < deadline:
        connection, status, body = get(port, token, "/admin/status")
        connection.close()
        roles = {entry["name"]: entry for entry in json.loads(body)["roles"]}
        if any(client["pid"] == os.getpid() and client["requests"] >= requests
               for client in roles[role]["clients"]):
            print(os.getpid())
            return 0
        time.sleep(0.005)
    print(f"pid {os.getpid()} was never named", file=sys.stderr)
    return 3


def main():
    port, token_file, role, requests = sys.argv[1:5]
    with open(token_file) as f:
        token = f.read()
    if len(sys.argv) > 6 and sys.argv[5] == "--fork":
        for _ in range(int(sys.argv[6])):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(take(int(port), token, role, int(requests)))
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                return 1
        return 0
    return take(int(port), token, role, int(requests))


if __name__ == "__main__":
    sys.exit(main())
