#!/usr/bin/env bash
# Makes the base images of the Docker test (tests/it/docker.rs) without an
# image registry, which these machines cannot reach, and prints their names:
#
#   app=assumed-test/app:HASH          Debian + python3, the AWS CLI v1, boto3, moto
#   runtime=assumed-test/runtime:HASH  the distroless/cc-debian12 equivalent
#
# Both come from one `debootstrap --variant=minbase` of Debian 12 (Debian's
# packages are reachable) and `docker import`:
#
# * app: the whole root filesystem, with the Python packages from PyPI. It
#   stands in for amazon/aws-cli (entrypoint `aws`), serves as the Dockerfile's
#   BUILD_IMAGE when the binary is built on the host, and runs moto as the
#   stack's STS. Debian's own python3-boto3 and awscli are too old to read
#   AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, so the SDKs come from PyPI.
# * runtime: only what gcr.io/distroless/cc-debian12 holds: glibc, libgcc,
#   libstdc++, libssl, CA certificates, tzdata, netbase, and users root,
#   nobody and nonroot (65532). No shell, no package manager.
#
# HASH is a hash of this file, so the images are made once per machine and
# recipe: a second run finds them in the engine and only prints the names.
# Images of older recipes are removed. Needs root, debootstrap, a Docker
# engine, and python3 with pip (for PyPI).
#
#   DOCKER=/usr/bin/docker tests/docker/base-images.sh
set -euo pipefail

DOCKER="${DOCKER:-docker}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The AWS CLI v1 and boto3 read the token file since late 2023; moto serves STS.
PYTHON_PACKAGES=(awscli==1.45.11 boto3==1.43.11 botocore==1.43.11 moto==5.2.1 flask==3.1.3 flask-cors==6.0.2)
# What the runtime image keeps of the root filesystem (distroless cc = base + libgcc, libstdc++).
RUNTIME_PACKAGES=(libc6 libgcc-s1 libstdc++6 libssl3 tzdata netbase)

hash=$(sha256sum "$0" | cut -c1-12)
app="assumed-test/app:$hash"
runtime="assumed-test/runtime:$hash"

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if have_image "$app" && have_image "$runtime"; then
  printf 'app=%s\nruntime=%s\n' "$app" "$runtime"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/assumed-base-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "base-images: debootstrap $SUITE (minbase) into $root" >&2
debootstrap --variant=minbase --include=python3,ca-certificates,libssl3,tzdata,netbase \
  "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

echo "base-images: ${PYTHON_PACKAGES[*]} from PyPI" >&2
# Wheels for the image's CPython 3.11, whatever python3 runs pip here;
# /usr/local/lib/python3.11/dist-packages is on the sys.path of Debian's python3.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-compile \
  --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
  --target "$root/usr/local/lib/python3.11/dist-packages" "${PYTHON_PACKAGES[@]}"
# pip --target writes entry points for the interpreter running it; these use the image's.
rm -rf "$root/usr/local/lib/python3.11/dist-packages/bin"
printf '#!/usr/bin/python3\nimport sys\nfrom awscli.clidriver import main\nsys.exit(main())\n' \
  >"$root/usr/local/bin/aws"
printf '#!/usr/bin/python3\nimport sys\nfrom moto.server import main\nsys.exit(main())\n' \
  >"$root/usr/local/bin/moto_server"
chmod 0755 "$root/usr/local/bin/aws" "$root/usr/local/bin/moto_server"

echo "base-images: docker import $app" >&2
tar -C "$root" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf - . |
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/aws"]' \
    - "$app" >/dev/null

# The runtime image: the files of RUNTIME_PACKAGES as dpkg lists them, moved
# to where usr-merge puts them (/lib is a link to usr/lib here), plus the CA
# bundle update-ca-certificates generated, and distroless's users.
echo "base-images: docker import $runtime" >&2
slim="$work/runtime"
mkdir -p "$slim"
for package in "${RUNTIME_PACKAGES[@]}"; do
  list="$root/var/lib/dpkg/info/$package.list"
  [[ -f "$list" ]] || list="$root/var/lib/dpkg/info/$package:amd64.list"
  cat "$list"
done | sed -E 's#^/(bin|sbin|lib|lib64)(/|$)#/usr/\1\2#' | sort -u >"$work/runtime.files"
while IFS= read -r path; do
  [[ "$path" == "/." || "$path" == "/usr" ]] && continue
  if [[ -d "$root$path" && ! -L "$root$path" ]]; then
    mkdir -p "$slim$path"
  elif [[ -e "$root$path" || -L "$root$path" ]]; then
    mkdir -p "$slim$(dirname "$path")"
    cp -a "$root$path" "$slim$path"
  fi
done <"$work/runtime.files"
for dir in bin sbin lib lib64; do
  [[ -d "$slim/usr/$dir" ]] || mkdir -p "$slim/usr/$dir"
  ln -s "usr/$dir" "$slim/$dir"
done
mkdir -p "$slim/etc/ssl/certs" "$slim/home/nonroot" "$slim/root" "$slim/run"
install -d -m 1777 "$slim/tmp"
cp "$root/etc/ssl/certs/ca-certificates.crt" "$slim/etc/ssl/certs/"
cp "$root/etc/os-release" "$root/usr/lib/os-release" "$slim/etc/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$slim/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$slim/etc/group"
printf 'hosts: files dns\n' >"$slim/etc/nsswitch.conf"
chown 65532:65532 "$slim/home/nonroot"
chmod 0700 "$slim/root"
if find "$slim" -name sh -o -name bash -o -name dash -o -name busybox | grep -q .; then
  echo "base-images: the runtime image would have a shell" >&2
  exit 1
fi
tar -C "$slim" --numeric-owner -cf - . |
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - "$runtime" >/dev/null

# Images of other recipes are no longer used.
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}' |
  grep -E '^assumed-test/(app|runtime):' | grep -v ":$hash\$" |
  xargs -r "$DOCKER" image rm >/dev/null 2>&1 || true

printf 'app=%s\nruntime=%s\n' "$app" "$runtime"
