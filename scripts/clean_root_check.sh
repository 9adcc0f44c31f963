#!/usr/bin/env bash
# The Dockerfile's CPU stage on a clean root, where no Docker engine runs: debootstrap a minimal
# Debian bookworm (what `FROM debian:bookworm` starts from), then in a chroot the stage's steps —
# its system packages, the repository, ./install.sh — and a fast part of the test suite, with
# real `horovodrun -np 2 --gloo` jobs. Not run in CI: it took 23 minutes on 2 cores shared with
# other jobs, 14 of them in ./install.sh (building Horovod). docs/DISTRIBUTED.md records the run.
#
# Needs root (debootstrap, mount, chroot) and Linux; installs debootstrap with apt-get if missing.
#   CLEAN_ROOT  the folder for the root (default: a new folder under /tmp), removed at the end
#               unless KEEP_ROOT=1
#   MIRROR      the Debian mirror (default: the one this machine's apt uses)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
suite=bookworm  # the Dockerfile's DEBIAN_VERSION (tests/test_dockerfile.py checks they agree)
# The Dockerfile CPU stage's apt packages (tests/test_dockerfile.py checks they are the same).
packages=(python3.11 python3.11-venv python3.11-dev g++ make openssh-client ca-certificates)
# The tests: the fast, single-process ones, then four horovodrun tests sharing two 2-process
# training jobs (a rank that dies, the job resumed).
single_process_tests=(tests/test_objectives.py tests/test_layers.py)
horovod_tests=(tests/test_horovod.py
               -k "dies or identical_weights or resume_under or only_rank_0_writes")

[ "$(id -u)" = 0 ] || { echo "clean_root_check.sh: run it as root" >&2; exit 2; }

# The first URI of this machine's apt sources that ends in /$1 (debian, debian-security).
apt_uri() {
  {
    sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
    sed -nE 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | tr ' ' '\n' || true
  } | grep -m1 -E "/$1/?\$" || echo "http://deb.debian.org/$1"
}
mirror=${MIRROR:-$(apt_uri debian)}
security=$(apt_uri debian-security)

root=${CLEAN_ROOT:-$(mktemp -d /tmp/glow_nxn-clean-root.XXXXXX)}
root=$(realpath "$root")
mounted=()

mount_in_root() {  # mount_in_root TARGET MOUNT-ARGUMENTS...: mounts, and remembers to unmount
  mkdir -p "$root$1"
  mount "${@:2}" "$root$1"
  mounted+=("$root$1")
}

cleanup() {
  local status=$? pid target
  # Processes still running in the root (a test's leftover horovodrun worker) hold its mounts.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] && kill -9 "$pid" 2>/dev/null
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    target=${mounted[i]}
    umount "$target" 2>/dev/null || umount -l "$target" || echo "could not unmount $target" >&2
  done
  if grep -qF " $root/" /proc/mounts; then
    echo "clean-root: something is still mounted under $root; not removing it" >&2
  elif [ "${KEEP_ROOT:-0}" = 1 ]; then
    echo "clean-root: kept $root"
  else
    rm -rf --one-file-system "$root"
  fi
  [ "$status" = 0 ] || echo "clean-root: failed (exit $status)" >&2
}
trap cleanup EXIT

stage_start=$SECONDS
stage_done() {
  echo "clean-root: $1 took $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}

# A command in the root, with the environment of a fresh container (nothing of this machine's
# but its pip settings): Debian's default PATH, so no cmake, pip or python but the root's own.
root_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
pip_environment=()
while IFS= read -r assignment; do pip_environment+=("$assignment"); done \
  < <(env | grep -E '^PIP_' || true)
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH="$root_path" \
    DEBIAN_FRONTEND=noninteractive "${pip_environment[@]}" "$@"
}

echo "clean-root: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), debootstrap $suite from $mirror into $root"
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
debootstrap --variant=minbase "$suite" "$root" "$mirror"
stage_done "debootstrap --variant=minbase $suite"

# What Docker gives a container: the host's name resolution; /proc, /sys, /dev and a /dev/shm
# (Python's multiprocessing, which horovodrun uses, needs it).
cp /etc/resolv.conf /etc/hosts "$root/etc/"
mount_in_root /proc -t proc proc
mount_in_root /sys -t sysfs sysfs
mount_in_root /dev --bind /dev
mount --make-rslave "$root/dev"  # so that the /dev/shm below is not also mounted on this /dev
mount_in_root /dev/shm -t tmpfs shm
# The debian:bookworm image's apt sources: the release, its updates and its security updates.
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# How this machine reaches the package registries: its pip settings (files and PIP_* variables),
# the local folders and file:// indexes they name (read-only; an index's folder with the one
# above it, where its pages' ../../files links lead), and the local CA certificates of its system
# bundle, which pip's `cert` points at (a proxy's, say): installing ca-certificates below adds
# them to the root's bundle.
for config in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip"; do
  if [ -e "$config" ]; then
    target="$root${config/#$HOME//root}"
    mkdir -p "$(dirname "$target")"
    cp -a "$config" "$target"
  fi
done
for folder in $( { cat /etc/pip.conf /etc/xdg/pip/*.conf "$HOME/.config/pip/"*.conf 2>/dev/null
                   printf '%s\n' "${pip_environment[@]}"; } \
                 | grep -oE '(file://)?/[^[:space:]]+' | sed -E 's#^file://##; s#/simple/?$##' \
                 | sort -u); do
  if [ -d "$folder" ] && [ "${folder#/etc/}" = "$folder" ]; then
    mount_in_root "$folder" --bind -o ro "$folder"
  fi
done
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi

# The CPU stage: its system packages, then the repository (minus .dockerignore's patterns) in
# /glow_nxn, then ./install.sh with the stage's GLOW_NXN_VENV and PYTHON. PATH stays Debian's: the
# stage also puts /opt/venv/bin first, but install.sh must not need it (the README's set-up).
in_root apt-get update -q
in_root apt-get install -y -q --no-install-recommends "${packages[@]}"
in_root sh <<'EOF'
echo "clean-root: $(python3.11 --version), $(g++ --version | head -1)"
echo "clean-root: on PATH: cmake $(command -v cmake || echo none)," \
  "pip $(command -v pip || echo none)"
EOF
stage_done "apt-get install ${packages[*]}"

mkdir -p "$root/glow_nxn"
tar -C "$repo" --exclude-from=<(sed -nE 's#^\*\*/##; /^[^#[:space:]]/p' .dockerignore) -cf - . \
  | tar -C "$root/glow_nxn" -xf -
in_root sh -c 'cd /glow_nxn && GLOW_NXN_VENV=/opt/venv PYTHON=python3.11 ./install.sh'
in_root /opt/venv/bin/python -c "import horovod, horovod.tensorflow as hvd; \
assert hvd.gloo_built(), 'Horovod was built without Gloo'; \
print('clean-root: Horovod', horovod.__version__, 'built with Gloo')"
stage_done "./install.sh"

# The tests as `docker run` would run them: the stage's PATH, with /opt/venv/bin first.
test_command="cd /glow_nxn && PATH=/opt/venv/bin:\$PATH python -m pytest -q -p no:cacheprovider"
in_root sh -c "$test_command $(printf '%q ' "${single_process_tests[@]}")"
stage_done "pytest ${single_process_tests[*]}"
in_root sh -c "$test_command $(printf '%q ' "${horovod_tests[@]}")"
stage_done "pytest ${horovod_tests[*]}"
echo "clean-root: all stages passed"
