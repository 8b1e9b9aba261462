"""Checks that a compose file follows the recipe of docs/docker-compose.md.

`docker compose config` validates the schema where a compose client is
installed; this checks what the schema cannot: the ECS-style network, the
daemon at 169.254.170.2 with a health check, apps that wait for it and point
their SDKs at it by address, and the token on a shared named volume.

    python3 check_compose.py COMPOSE_FILE [--dockerfile DOCKERFILE]

Prints a summary and exits 0, or prints every problem and exits 1.
"""
import argparse
import ipaddress
import sys
from urllib.parse import urlsplit

import yaml

SUBNET = "169.254.170.0/24"
ECS_ADDRESS = "169.254.170.2"
TOKEN_DIR = "/run/assumed"
TOKEN_FILE = TOKEN_DIR + "/token"
# Hosts every SDK accepts in an http FULL_URI (SDK-CONTRACT.md §1), besides loopback.
SDK_HOSTS = {"169.254.170.2", "169.254.170.23", "fd00:ec2::23"}
STATIC_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}


def environment(service):
    """`environment:` as a dict, from either the map or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def mounts(service):
    """`volumes:` as (source, target, read_only), from short or long syntax."""
    result = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            options = parts[2].split(",") if len(parts) > 2 else []
            result.append((source, target, "ro" in options))
        else:
            result.append((volume.get("source"), volume.get("target"), bool(volume.get("read_only"))))
    return result


def networks_of(service):
    networks = service.get("networks") or {}
    if isinstance(networks, list):
        return {name: {} for name in networks}
    return {name: (settings or {}) for name, settings in networks.items()}


def allowed_full_uri(uri):
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if parts.scheme != "http":
        return False
    if host == "localhost" or host in SDK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_compose(doc, problems):
    services = doc.get("services") or {}
    named_volumes = set((doc.get("volumes") or {}).keys())

    network = None
    for name, settings in (doc.get("networks") or {}).items():
        for pool in ((settings or {}).get("ipam") or {}).get("config") or []:
            if pool.get("subnet") == SUBNET:
                network = name
    if network is None:
        problems.append(f"no network with ipam subnet {SUBNET}: SDKs allow only its {ECS_ADDRESS} over http")
        return []

    daemons = [
        name
        for name, service in services.items()
        if networks_of(service).get(network, {}).get("ipv4_address") == ECS_ADDRESS
    ]
    if len(daemons) != 1:
        problems.append(f"expected one service with ipv4_address {ECS_ADDRESS} on network {network}, found {daemons}")
        return []
    daemon_name = daemons[0]
    daemon = services[daemon_name]

    test = (daemon.get("healthcheck") or {}).get("test")
    if not test or test == ["NONE"] or "healthcheck" not in " ".join(test if isinstance(test, list) else [test]):
        problems.append(f"{daemon_name}: needs a healthcheck (assumed healthcheck), which apps wait for")
    token_volumes = [s for s, t, ro in mounts(daemon) if t == TOKEN_DIR and s in named_volumes and not ro]
    if not token_volumes:
        problems.append(f"{daemon_name}: needs a named volume mounted read-write at {TOKEN_DIR} for the token")
    for source, target, read_only in mounts(daemon):
        if (target.endswith(".toml") or target.endswith("/.aws")) and not read_only:
            problems.append(f"{daemon_name}: {target} must be mounted read-only")

    summary = []
    for name, service in services.items():
        if name == daemon_name or network not in networks_of(service):
            continue
        env = environment(service)
        depends_on = service.get("depends_on")
        # The list form cannot say service_healthy: the app would start before the daemon answers.
        wait = (depends_on.get(daemon_name) or {}) if isinstance(depends_on, dict) else {}
        if wait.get("condition") != "service_healthy":
            problems.append(f"{name}: depends_on {daemon_name} needs condition: service_healthy")
        for key in STATIC_KEYS & env.keys():
            problems.append(f"{name}: sets {key}, which SDKs prefer over the container endpoint")
        relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        imds = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        if relative is not None or full is not None:
            variant = "RELATIVE_URI" if relative is not None else "FULL_URI"
            if relative is not None and not relative.startswith("/"):
                problems.append(f"{name}: RELATIVE_URI {relative!r} must start with /")
            if relative is None and not allowed_full_uri(full):
                problems.append(f"{name}: FULL_URI {full!r}: this host is not allowed by SDKs over http; use http://{ECS_ADDRESS}/…")
            if env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") != TOKEN_FILE:
                problems.append(f"{name}: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE must be {TOKEN_FILE}")
            shared = [ro for s, t, ro in mounts(service) if s in token_volumes and t == TOKEN_DIR]
            if not shared:
                problems.append(f"{name}: must mount the token volume at {TOKEN_DIR}")
            elif not all(shared):
                problems.append(f"{name}: must mount the token volume read-only")
        elif imds is not None:
            variant = "IMDS"
            if urlsplit(imds).hostname != ECS_ADDRESS:
                problems.append(f"{name}: AWS_EC2_METADATA_SERVICE_ENDPOINT should be http://{ECS_ADDRESS}/ (a name needs allowed_hosts)")
        else:
            problems.append(f"{name}: on network {network} but points no SDK variable at {daemon_name}")
            continue
        summary.append(f"{name} ({variant})")
    if not summary:
        problems.append(f"no app service uses {daemon_name}")
    return [f"daemon {daemon_name} at {ECS_ADDRESS} on {network} ({SUBNET})"] + summary


# What a plain `docker build .` uses; the test suite overrides them with local images.
DEFAULT_BASES = {"BUILD_IMAGE": "rust:", "RUNTIME_IMAGE": "gcr.io/distroless/", "BINARY": "build"}


def check_dockerfile(text, problems):
    # A `# syntax=` parser directive makes BuildKit pull a frontend image: no offline build.
    if any(line.replace(" ", "").lower().startswith("#syntax=") for line in text.splitlines()):
        problems.append("Dockerfile: no `# syntax=` line (it needs a registry; the built-in frontend suffices)")
    for arg, default in DEFAULT_BASES.items():
        if not any(line.strip().startswith(f"ARG {arg}={default}") for line in text.splitlines()):
            problems.append(f"Dockerfile: ARG {arg} must default to {default}… (docs/docker-compose.md)")
    # One instruction per line: join backslash continuations, drop comments.
    joined = text.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    keyword = lambda line: line.split(None, 1)[0].upper()
    if sum(keyword(line) == "FROM" for line in lines) < 2:
        problems.append("Dockerfile: expected a multi-stage build (a build stage and a small runtime stage)")
    users = [line.split(None, 1)[1] for line in lines if keyword(line) == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the runtime stage must run as a non-root USER")
    checks = [line for line in lines if keyword(line) == "HEALTHCHECK"]
    if not checks:
        problems.append("Dockerfile: needs a HEALTHCHECK")
    elif "healthcheck" not in checks[-1].split("CMD", 1)[-1]:
        problems.append("Dockerfile: the HEALTHCHECK should run `assumed healthcheck` (the image has no curl)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("compose_file")
    parser.add_argument("--dockerfile")
    args = parser.parse_args()
    problems = []
    with open(args.compose_file) as f:
        doc = yaml.safe_load(f)
    summary = check_compose(doc or {}, problems)
    if args.dockerfile:
        with open(args.dockerfile) as f:
            check_dockerfile(f.read(), problems)
    if problems:
        for problem in problems:
            print(f"{args.compose_file}: {problem}")
        sys.exit(1)
    print("ok: " + "; ".join(summary))


if __name__ == "__main__":
    main()
