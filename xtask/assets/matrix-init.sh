#!/bin/busybox sh
# The test driver of `cargo xtask matrix`: PID 1 of a throwaway VM booted with one of Debian's
# kernels. It builds two network namespaces joined by a veth pair, guards the server side with
# `knock-user run` (the Raspberry Pi guide's knockd.conf, verbatim) and checks the gate with
# IPv4 and IPv6 clients. Every result is a line starting with "MATRIX " on the console, which
# the host parses; the VM powers off at the end whatever happened.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# Kernel chatter would interleave with the result lines.
echo 1 > /proc/sys/kernel/printk

SERVER4=198.51.100.1
CLIENT4=198.51.100.2
SERVER6=2001:db8::1
CLIENT6=2001:db8::2
SEQUENCE="4438 1813 8235"
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

# An SSH stand-in: accepts and closes at once, so a client that connects exits 0.
in_server nc -ll -p 22 -e /bin/true &
sleep 1

# Returns 0 when a TCP connection to port 22 of $1 succeeds within two seconds.
connects() { in_client timeout 5 nc -w 2 "$1" 22 </dev/null >/dev/null 2>&1; }

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
pass "knock-user run loaded and attached the XDP program ($(grep -m1 -o 'verifier walked [^)]*' /tmp/daemon.log))"
# Whether the JIT is required is the host's call: arm32's JIT declines some programs and the
# kernel then runs them in the interpreter.
if grep -q ' bpf_prog_[0-9a-f]*_knock' /proc/kallsyms; then echo "MATRIX JIT yes"; else
    echo "MATRIX JIT no"
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
