#!/bin/sh
# podfs.sh: run a command with the filesystem a container of the pod would see.
#
#   unshare --mount --propagation private -- sh podfs.sh --scratch DIR \
#       [--ro-root] [--user UID:GID] TARGET=SOURCE[:rw] ... -- COMMAND [ARG...]
#
# Inside the (private) mount namespace it is started in, each SOURCE (a directory
# laid out like a kubelet volume, or a file such as the binary) is bind-mounted at
# TARGET, read-only unless `:rw`, exactly where the container mounts it
# (/etc/streamgate, /var/run/secrets/stream, /tmp, /usr/local/bin/streamgate). A
# TARGET whose directory does not exist on this machine is created on an overlay
# (upper layer on a tmpfs at DIR), so the machine itself is never written to.
# --ro-root remounts / read-only (readOnlyRootFilesystem); --user drops to that
# user with no capabilities and no_new_privs (runAsUser, drop ALL,
# allowPrivilegeEscalation: false). Then COMMAND replaces this shell.
#
# Mounts are done in the order given: a TARGET that hides the SOURCE of a later
# one (e.g. /tmp) must come last. Needs root; exits 97 when a mount fails, so
# that callers can fall back to rewritten paths.
set -eu

scratch=
ro_root=0
user=
specs=
while [ $# -gt 0 ]; do
    case $1 in
        --scratch) scratch=$2; shift 2 ;;
        --ro-root) ro_root=1; shift ;;
        --user) user=$2; shift 2 ;;
        --) shift; break ;;
        *=*) specs="$specs
$1"; shift ;;
        *) echo "podfs.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$scratch" ] || { echo "podfs.sh: --scratch DIR is required" >&2; exit 2; }
[ $# -gt 0 ] || { echo "podfs.sh: no command" >&2; exit 2; }

fail() { echo "podfs.sh: $*" >&2; exit 97; }

mount -t tmpfs -o mode=0700 podfs-scratch "$scratch" || fail "cannot mount a tmpfs (not root, or no mount namespace?)"
overlays=" "
n=0

# The deepest existing ancestor of $1.
existing_ancestor() {
    d=$1
    while [ ! -e "$d" ]; do d=$(dirname "$d"); done
    printf '%s' "$d"
}

while IFS= read -r spec; do
    [ -n "$spec" ] || continue
    target=${spec%%=*}
    source=${spec#*=}
    mode=ro
    case $source in *:rw) source=${source%:rw}; mode=rw ;; esac
    [ -e "$source" ] || fail "source $source does not exist"
    if [ ! -e "$target" ]; then
        anc=$(existing_ancestor "$target")
        [ "$anc" != / ] || fail "will not overlay / for $target"
        case $overlays in
            *" $anc "*) ;;
            *)
                n=$((n + 1))
                mkdir -p "$scratch/ov$n/upper" "$scratch/ov$n/work"
                mount -t overlay podfs-overlay \
                    -o "lowerdir=$anc,upperdir=$scratch/ov$n/upper,workdir=$scratch/ov$n/work" "$anc" \
                    || fail "cannot overlay $anc to create $target"
                overlays="$overlays$anc "
                ;;
        esac
        if [ -d "$source" ]; then
            mkdir -p "$target"
        else
            mkdir -p "$(dirname "$target")" && : > "$target"
        fi
    fi
    mount --bind "$source" "$target" || fail "cannot bind $source at $target"
    if [ "$mode" = ro ]; then
        mount -o remount,bind,ro "$target" || fail "cannot make $target read-only"
    fi
done <<SPECS
$specs
SPECS

if [ "$ro_root" = 1 ]; then
    mount -o remount,bind,ro / || fail "cannot make / read-only"
fi

if [ -n "$user" ]; then
    exec setpriv --reuid="${user%%:*}" --regid="${user#*:}" --clear-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
fi
exec "$@"
