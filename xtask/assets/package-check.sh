#!/bin/sh
# The install check of `cargo xtask package --check` and `cargo xtask test`: installs knock's
# .deb into a scratch root and checks it there. Runs inside `unshare --mount` as root, so every
# mount below disappears with this shell: the scratch root is an overlay of this machine's own
# root (Debian's knockd installed, as on a machine moving from knockd) with its writes in a
# tmpfs, and the machine is never changed.
#
# usage: package-check.sh DEB SCRATCH_DIR
set -eu
deb=$1
scratch=$2
root=$scratch/root

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
ok() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; exit 1; }

mount -t tmpfs knock-scratch "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay knock-root -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" \
    "$root"
mount -t proc proc "$root/proc"
knockd_before=$(in_root dpkg --verify knockd 2>&1 || true)
mount --rbind /dev "$root/dev"
# No /sys: `knock-user stop` in the prerm must find nothing of this machine to stop.
mount -t tmpfs run "$root/run"
mount -t tmpfs tmp "$root/tmp"
cp "$deb" "$root/tmp/knock.deb"

in_root dpkg -i /tmp/knock.deb >"$scratch/dpkg-install.log" 2>&1 \
    || { cat "$scratch/dpkg-install.log"; fail "dpkg -i"; }
in_root dpkg-query -W -f='${Status}\n' knock | grep -qx 'install ok installed' \
    || fail "dpkg does not list knock as installed"
ok "dpkg -i: $(in_root dpkg-query -W -f='${Package} ${Version} ${Architecture}' knock)"

if in_root dpkg-query -W -f='${Status}\n' knockd 2>/dev/null | grep -qx 'install ok installed'; then
    [ "$(in_root dpkg-query -S /usr/sbin/knockd | cut -d: -f1)" = knockd ] \
        || fail "/usr/sbin/knockd no longer belongs to knockd"
    [ "$(in_root dpkg --verify knockd 2>&1 || true)" = "$knockd_before" ] \
        || fail "knockd's files changed"
    ok "beside Debian's knockd, whose files are untouched"
fi

version=$(in_root /usr/sbin/knock-user --version)
case $version in "knock-user "*) ;; *) fail "knock-user --version: $version" ;; esac
knockd_name=$(in_root /usr/libexec/knock/knockd --version)
case $knockd_name in "knockd "*) ;; *) fail "/usr/libexec/knock/knockd --version: $knockd_name" ;; esac
ok "$version; /usr/libexec/knock/knockd answers as $knockd_name"

in_root knock-user check -c /usr/share/doc/knock/examples/knockd.conf >/dev/null \
    || fail "the example configuration does not pass check"
ok "the example knockd.conf passes knock-user check"

for page in knock-user knock-user-run knock-user-check knock-user-knock knock-user-spa \
    knock-user-keygen; do
    in_root man -w "$page" >/dev/null 2>&1 || fail "man finds no $page"
done
in_root sh -c 'MANWIDTH=80 man knock-user-run 2>/dev/null' | grep -q -- '--xdp-mode' \
    || fail "man knock-user-run does not show --xdp-mode"
ok "man pages: man knock-user-run and the others"

in_root bash -c '. /usr/share/bash-completion/completions/knock-user
    COMP_WORDS=(knock-user run --xdp-mode ""); COMP_CWORD=3
    _knock__user knock-user "" --xdp-mode; echo "${COMPREPLY[*]}"' | grep -qx 'auto native skb' \
    || fail "bash does not complete knock-user run --xdp-mode"
ok "bash completion from /usr/share/bash-completion/completions/knock-user"

in_root sh -c 'command -v systemd-analyze' >/dev/null \
    || fail "systemd-analyze is not installed (cargo xtask bootstrap installs Debian's systemd)"
verify=$(in_root systemd-analyze verify /usr/lib/systemd/system/knock.service 2>&1) \
    || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
ok "systemd-analyze verify knock.service: no complaint"
for wants in "$root"/etc/systemd/system/*.wants; do
    [ ! -e "$wants/knock.service" ] || fail "knock.service is enabled on install"
done
grep -qx 'KNOCK_OPTS=""' "$root/etc/default/knock" || fail "/etc/default/knock"
grep -qx '/etc/default/knock' "$root/var/lib/dpkg/info/knock.conffiles" \
    || fail "/etc/default/knock is not a conffile"
ok "knock.service installed, not enabled; /etc/default/knock is a conffile"

in_root dpkg -r knock >"$scratch/dpkg-remove.log" 2>&1 \
    || { cat "$scratch/dpkg-remove.log"; fail "dpkg -r"; }
[ ! -e "$root/usr/sbin/knock-user" ] || fail "dpkg -r left /usr/sbin/knock-user"
[ -e "$root/etc/default/knock" ] || fail "dpkg -r removed the conffile"
in_root dpkg -P knock >"$scratch/dpkg-purge.log" 2>&1 \
    || { cat "$scratch/dpkg-purge.log"; fail "dpkg -P"; }
[ ! -e "$root/etc/default/knock" ] || fail "dpkg -P left /etc/default/knock"
ok "dpkg -r removes the files and keeps /etc/default/knock; dpkg -P removes it"
