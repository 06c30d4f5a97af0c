#!/bin/busybox sh
# The test driver of `cargo xtask matrix`: PID 1 of a throwaway VM booted with one of Debian's
# kernels. It builds two network namespaces joined by a veth pair, guards the server side with
# `knock-user run` (the Raspberry Pi guide's knockd.conf, verbatim, followed by an SPA door and a
# rotating door) and checks the gate with IPv4 and IPv6 clients: knocks, SPA packets (good,
# replayed, forged) and a rotating sequence (current, then again). Every result is a line
# starting with "MATRIX " on the console, which the host parses; the VM powers off at the end
# whatever happened.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# Pins where `knock-user status` finds them; init, the daemon and status share one mount namespace.
mount -t bpf bpf /sys/fs/bpf
# Kernel chatter would interleave with the result lines.
echo 1 > /proc/sys/kernel/printk

SERVER4=198.51.100.1
CLIENT4=198.51.100.2
SERVER6=2001:db8::1
CLIENT6=2001:db8::2
SEQUENCE="4438 1813 8235"
# The ports the SPA door and the rotating door guard (assets/matrix-doors.conf).
SPA_GUARDED=2222
ROTATING_GUARDED=2223
# Fixed nonces make `knock-user spa` send the same packet twice: the second one is a replay.
NONCE4=6d61747269782d7265706c6179203034
NONCE6=6d61747269782d7265706c6179203036
FAILED=0

say() { echo "MATRIX INFO $*"; }
pass() { echo "MATRIX PASS $*"; }
fail() { echo "MATRIX FAIL $*"; FAILED=1; }
finish() {
    if [ "$FAILED" = 0 ]; then echo "MATRIX DONE ok"; else echo "MATRIX DONE failed"; fi
    sync
    poweroff -f
    sleep 10
}
show_log() {
    sed 's/^/MATRIX LOG | /' /tmp/daemon.log
}
# Waits up to $2 tenths of a second (default 50) for the daemon to log $1.
logged() {
    for _ in $(seq 1 "${2:-50}"); do
        grep -q -- "$1" /tmp/daemon.log && return 0
        sleep 0.1
    done
    return 1
}
# How many lines of the daemon's log contain $1.
log_count() { grep -c -- "$1" /tmp/daemon.log; }
# A counter of the kernel's program as `knock-user status --json` reports it.
counter() {
    in_server /knock-user status --json 2>/tmp/status.err | grep -o "\"$1\": [0-9]*" | grep -o '[0-9]*$'
}
# Waits up to five seconds for counter $1 to exceed $2; prints its value.
counter_above() {
    value=
    for _ in $(seq 1 25); do
        value=$(counter "$1")
        [ -n "$value" ] && [ "$value" -gt "$2" ] && break
        sleep 0.2
    done
    echo "${value:-unreadable ($(cat /tmp/status.err))}"
}

say "kernel $(uname -r) $(uname -m)"
for module in /modules/*.ko; do
    [ -e "$module" ] || continue
    insmod "$module" || fail "insmod $module"
done

# JIT every program and name it in kallsyms, so the arm64 run shows that the JIT took the program
# rather than the interpreter it falls back to.
echo 1 > /proc/sys/net/core/bpf_jit_enable
echo 1 > /proc/sys/net/core/bpf_jit_kallsyms

# Each namespace is held by a sleeping process; nsenter -t PID joins it.
unshare -n sleep 100000 &
SERVER=$!
unshare -n sleep 100000 &
CLIENT=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ "$(readlink /proc/$SERVER/ns/net)" != "$(readlink /proc/self/ns/net)" ] &&
        [ "$(readlink /proc/$CLIENT/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.2
done
in_server() { nsenter -F -t "$SERVER" -n "$@"; }
in_client() { nsenter -F -t "$CLIENT" -n "$@"; }

# busybox ip cannot name a veth peer: the kernel calls it veth0.
ip link add srv type veth || { fail "cannot create a veth pair"; finish; }
ip link set veth0 name cli
for pid in "$SERVER" "$CLIENT"; do
    # Addresses are usable at once only without duplicate address detection.
    nsenter -t "$pid" -n sysctl -qw net.ipv6.conf.default.accept_dad=0
    nsenter -t "$pid" -n sysctl -qw net.ipv6.conf.all.accept_dad=0
done
ip link set srv netns "$SERVER"
ip link set cli netns "$CLIENT"
in_server ip link set lo up
in_server ip link set srv up
in_server ip addr add "$SERVER4/24" dev srv
in_server ip addr add "$SERVER6/64" dev srv
in_client ip link set lo up
in_client ip link set cli up
in_client ip addr add "$CLIENT4/24" dev cli
in_client ip addr add "$CLIENT6/64" dev cli

# An SSH stand-in on each guarded port: accepts and closes at once, so a client that connects
# exits 0.
for port in 22 "$SPA_GUARDED" "$ROTATING_GUARDED"; do
    in_server nc -ll -p "$port" -e /bin/true &
done
sleep 1

# Returns 0 when a TCP connection to port $2 (default 22) of $1 succeeds within two seconds.
connects() { in_client timeout 5 nc -w 2 "$1" "${2:-22}" </dev/null >/dev/null 2>&1; }

# The SPA door's key and the rotating door's secret, made by the guest's own knock-user; a key
# with the right id and the wrong bytes stands in for a forger.
/knock-user keygen --id 7 --comment matrix >/tmp/spa.keys || fail "knock-user keygen failed"
echo "7 000102030405060708090a0b0c0d0e0f forged" >/tmp/forged.key
/knock-user keygen --rotating openRotating --ports 30000-39999 >/tmp/rotating.secret ||
    fail "knock-user keygen --rotating failed"

for server in "$SERVER4" "$SERVER6"; do
    if connects "$server"; then pass "$server: port 22 reachable without knock-user"; else
        fail "$server: port 22 unreachable even without knock-user: the test network is broken"
        finish
    fi
done

# Not through in_server: $! must be knock-user itself, for its VmRSS and for SIGINT.
nsenter -F -t "$SERVER" -n /knock-user run -c /knockd.conf -i srv -v >/tmp/daemon.log 2>&1 &
DAEMON=$!
started=no
for _ in $(seq 1 600); do
    if grep -q "starting up" /tmp/daemon.log; then started=yes; break; fi
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.2
done
if [ "$started" = no ]; then
    fail "knock-user run did not start (the verifier's last lines follow)"
    show_log
    finish
fi
sleep 1
pass "knock-user run loaded and attached the XDP programs"
# What the kernel made of each program, as the daemon read it back (instructions, verifier's
# walk, JIT image): the host judges these lines.
grep -o 'program knock[a-z_]*: .*' /tmp/daemon.log | sed 's/^/MATRIX PROGRAM /'
# The JIT also names each program it compiled in kallsyms (bpf_prog_TAG_NAME).
for program in knock knock_spa knock_gate knock_open knock_guard; do
    if grep -q -E " bpf_prog_[0-9a-f]+_$program([[:space:]]|\$)" /proc/kallsyms; then
        echo "MATRIX KALLSYMS $program"
    fi
done
if dmesg | grep -q -i -E "not yet|jit"; then
    # arm32's JIT names the first instruction it cannot translate ("NOT YET: opcode ...").
    dmesg | grep -i -E "not yet|jit" | sed 's/^/MATRIX INFO dmesg: /'
fi
echo "MATRIX RSS $(awk '/VmRSS/ {print $2}' /proc/$DAEMON/status) kB"

for pair in "$SERVER4 $CLIENT4" "$SERVER6 $CLIENT6"; do
    set -- $pair
    server=$1 client=$2
    if connects "$server"; then fail "$server: port 22 answered before knocking"; else
        pass "$server: SYN to port 22 dropped before knocking"
    fi
    # shellcheck disable=SC2086
    if in_client /knock-user knock -v "$server" $SEQUENCE; then pass "$server: knock-user knock sent the sequence"; else
        fail "$server: knock-user knock failed"
    fi
    opened=no
    for _ in $(seq 1 50); do
        if grep -q "$client: openSSH: OPEN SESAME" /tmp/daemon.log; then opened=yes; break; fi
        sleep 0.1
    done
    if [ "$opened" = yes ]; then pass "$server: the door opened for $client"; else fail "$server: no OPEN SESAME for $client"; fi
    if connects "$server"; then pass "$server: port 22 connects after knocking"; else
        fail "$server: port 22 still shut after knocking"
    fi
    if grep -q -- "-A KNOCKD -s $client -p tcp --dport 22 -j ACCEPT" /tmp/iptables.log 2>/dev/null; then
        pass "$server: the start command ran for $client"
    else
        fail "$server: the start command did not run for $client"
    fi
done

DOORS_STARTED=$(date +%s)
# Single-packet authorization, over IPv4 and IPv6: a forged packet is refused and the door stays
# shut; the client's packet opens it; the same packet again is refused as a replay.
for pair in "$SERVER4 $CLIENT4 $NONCE4" "$SERVER6 $CLIENT6 $NONCE6"; do
    set -- $pair
    server=$1 client=$2 nonce=$3
    spa() { in_client /knock-user spa "$@" "$server" openSPA; }
    before=$(counter spa_bad_mac)
    spa --key-file /tmp/forged.key || fail "$server: knock-user spa (forged key) failed"
    after=$(counter_above spa_bad_mac "${before:-0}")
    if [ "$after" = "$((before + 1))" ] && ! connects "$server" "$SPA_GUARDED"; then
        pass "$server: SPA with a forged key refused, port $SPA_GUARDED still shut (spa_bad_mac $before -> $after)"
    else
        fail "$server: SPA with a forged key: spa_bad_mac $before -> $after, or port $SPA_GUARDED answered"
    fi
    at=$(date +%s)
    accepted=$(counter spa_accepted)
    if spa --key-file /tmp/spa.keys --at "$at" --nonce "$nonce"; then :; else
        fail "$server: knock-user spa failed"
    fi
    if logged "$client: openSPA: OPEN SESAME"; then
        pass "$server: SPA from the guest's client opened openSPA for $client (spa_accepted $accepted -> $(counter spa_accepted))"
    else
        fail "$server: no OPEN SESAME for $client after SPA"
    fi
    if connects "$server" "$SPA_GUARDED"; then pass "$server: port $SPA_GUARDED connects after SPA"; else
        fail "$server: port $SPA_GUARDED still shut after SPA"
    fi
    opened=$(log_count "openSPA: OPEN SESAME")
    accepted=$(counter spa_accepted)
    before=$(counter spa_replayed)
    spa --key-file /tmp/spa.keys --at "$at" --nonce "$nonce" || fail "$server: knock-user spa (replay) failed"
    after=$(counter_above spa_replayed "${before:-0}")
    if [ "$after" = "$((before + 1))" ] && [ "$(counter spa_accepted)" = "$accepted" ] &&
        [ "$(log_count "openSPA: OPEN SESAME")" = "$opened" ]; then
        pass "$server: the same SPA packet again refused as a replay (spa_replayed $before -> $after, spa_accepted stays $accepted)"
    else
        fail "$server: the replayed SPA packet: spa_replayed $before -> $after, spa_accepted $accepted -> $(counter spa_accepted), openings $opened -> $(log_count "openSPA: OPEN SESAME")"
    fi
done

# A rotating door: the current sequence opens it; after it closed, the same sequence (the same
# period: --at pins the client's clock) opens nothing.
if connects "$SERVER4" "$ROTATING_GUARDED"; then fail "$SERVER4: port $ROTATING_GUARDED answered before knocking"; else
    pass "$SERVER4: SYN to port $ROTATING_GUARDED dropped before the rotating knock"
fi
at=$(date +%s)
rotating() {
    in_client /knock-user knock -v --secret-file /tmp/rotating.secret --at "$at" "$SERVER4" openRotating
}
sequence=$(rotating | sed -n 's/^hitting \([a-z]*\) .*:\([0-9]*\)$/\2:\1/p' | tr '\n' ' ')
if logged "$CLIENT4: openRotating: OPEN SESAME"; then
    pass "$SERVER4: the rotating door opened for $CLIENT4 with the current sequence (${sequence% })"
else
    fail "$SERVER4: no OPEN SESAME for $CLIENT4 after the rotating sequence (${sequence% })"
fi
if connects "$SERVER4" "$ROTATING_GUARDED"; then pass "$SERVER4: port $ROTATING_GUARDED connects after the rotating knock"; else
    fail "$SERVER4: port $ROTATING_GUARDED still shut after the rotating knock"
fi
logged "openRotating: door closed" 100 || fail "the rotating door did not close"
opened=$(counter doors_opened)
rotating >/dev/null
sleep 1
if [ "$(log_count "openRotating: OPEN SESAME")" = 1 ] && [ "$(counter doors_opened)" = "$opened" ] &&
    ! connects "$SERVER4" "$ROTATING_GUARDED"; then
    pass "$SERVER4: the same rotating sequence again opened nothing, port $ROTATING_GUARDED still shut (doors_opened $opened -> $(counter doors_opened))"
else
    fail "$SERVER4: the rotating sequence worked twice (doors_opened $opened -> $(counter doors_opened))"
fi
say "the SPA and rotating checks took $(($(date +%s) - DOORS_STARTED)) s"

echo "MATRIX RSS $(awk '/VmRSS/ {print $2}' /proc/$DAEMON/status) kB"
echo "MATRIX PEAK $(awk '/VmHWM/ {print $2}' /proc/$DAEMON/status) kB"

kill -INT "$DAEMON"
for _ in $(seq 1 50); do
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$DAEMON" 2>/dev/null; then fail "knock-user run ignored SIGINT"; else pass "knock-user run stopped on SIGINT"; fi
show_log
finish
