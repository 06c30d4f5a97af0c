#!/bin/bash
# The walk of `cargo xtask system`: README's "Run it on your own box" and "Operations" as root
# types them on a Debian box with real systemd, step by step, each step one line of evidence on
# the serial console ("SYSTEM ok STEP: EVIDENCE"). walk.service runs it at every boot; the
# phase file carries it across the reboot. /run/walk holds the payload: this script, net.sh
# and the packages (knock.deb, knock-upgrade.deb).
#
# Network (net.sh): kv0 198.51.100.1 / 2001:db8:1::1 here, the default route; the knocker in
# netns client (198.51.100.2 / 2001:db8:1::2); a stranger behind it in netns stranger
# (203.0.113.2 / 2001:db8:2::2) who never knocks. A systemd socket listens on port 22.
set -u
export LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
W=/run/walk
STATE=/var/lib/walk
mkdir -p "$STATE"
LOG=$STATE/commands.log

SERVER4=198.51.100.1
SERVER6=2001:db8:1::1
CLIENT4=198.51.100.2
CLIENT6=2001:db8:1::2
SEQUENCE="7000 8000 9000"

say() { echo "SYSTEM $*"; }
ok() { say "ok   $1: $2"; }
fail() {
    say "FAIL $1: $2"
    say "LOG --- journalctl -u knock (last 40 lines) ---"
    journalctl -u knock -n 40 --no-pager -o short-monotonic 2>&1 | sed 's/^/SYSTEM LOG /'
    say "LOG --- commands (last 30 lines) ---"
    tail -n 30 "$LOG" | sed 's/^/SYSTEM LOG /'
    say "DONE failed"
    systemctl poweroff --no-block
    exit 1
}
# Runs a command, its output to the log; returns its status.
run() {
    echo "# $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}
# Its output, also logged.
out() {
    echo "# $*" >>"$LOG"
    "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}
in_client() { ip netns exec client "$@"; }
in_stranger() { ip netns exec stranger "$@"; }
# Whether ADDRESS port 22 accepts a connection from the client within 3 s.
connects() { in_client timeout 3 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; }
# Waits up to $1 seconds for the command after it to succeed.
within() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}
prop() { systemctl show -P "$1" knock; }
# Journal lines of knock.service since the time stamp $1 (seconds since the epoch).
journal_since() { journalctl -u knock --since "@$1" --no-pager -o short 2>/dev/null; }
has_line() { journal_since "$1" | grep -q -- "$2"; }
knock_from_client() { in_client $KNOCK_CLIENT knock "$1" $SEQUENCE; }
xdp_on() { ip -d link show kv0 | grep -q 'prog/xdp'; }

# The stranger's probes: SYNs to port 22 and the SYN-ACKs that come back, counted by
# iptables in its namespace.
probe_counters_reset() {
    for t in iptables ip6tables; do
        in_stranger $t -F
        in_stranger $t -A OUTPUT -p tcp --dport 22 --tcp-flags SYN,ACK,RST SYN -j ACCEPT
        in_stranger $t -A INPUT -p tcp --sport 22 --tcp-flags SYN,ACK SYN,ACK -j ACCEPT
    done
}
count() { in_stranger "$1" -L "$2" -v -n -x | awk '$3 == "ACCEPT" { n += $1 } END { print n + 0 }'; }
syns() { echo $(($(count iptables OUTPUT) + $(count ip6tables OUTPUT))); }
synacks() { echo $(($(count iptables INPUT) + $(count ip6tables INPUT))); }
probe_start() {
    rm -f "$W/probe.stop"
    in_stranger sh -c "while [ ! -e $W/probe.stop ]; do
        $KNOCK_CLIENT knock -d 20 $SERVER4 22 22 22 22 22 22 22 22 22 22
        $KNOCK_CLIENT knock -d 20 $SERVER6 22 22 22 22 22
    done" >>"$LOG" 2>&1 &
    PROBER=$!
}
probe_stop() {
    touch "$W/probe.stop"
    wait "$PROBER"
}

phase=$(cat "$STATE/phase" 2>/dev/null || echo 1)
say "INFO phase $phase: $(uname -r), $(systemctl --version | head -n 1)"
say "INFO booted in $(cut -d' ' -f1 /proc/uptime) s"
systemctl is-active -q walk-net.service ||
    fail "network" "walk-net.service failed: $(journalctl -u walk-net -o cat --no-pager | tail -n 3 | tr '\n' ' ')"
# The knock client the walk uses, kept apart from the package it installs and removes (and
# out of /run, which is noexec).
KNOCK_CLIENT=/usr/local/sbin/knock-client
[ -x $KNOCK_CLIENT ] || { dpkg-deb --fsys-tarfile "$W/knock.deb" |
    tar -xO ./usr/sbin/knock-user >$KNOCK_CLIENT && chmod 755 $KNOCK_CLIENT; }

if [ "$phase" = 1 ]; then
    # ---- Run it on your own box ----
    run apt-get install -y "$W/knock.deb" || fail "apt install" "apt-get install failed"
    version=$(dpkg-query -W -f '${Version}' knock)
    [ "$(systemctl is-enabled knock)" = disabled ] || fail "apt install" "knock.service is enabled on install"
    [ "$(systemctl is-active knock)" = inactive ] || fail "apt install" "knock.service runs on install"
    ok "apt install ./knock_*.deb" "knock $version installed; knock.service $(systemctl is-enabled knock) and $(systemctl is-active knock)"

    [ ! -e /etc/knockd.conf ] || fail "no configuration" "/etc/knockd.conf exists before the operator wrote one"
    t=$(date +%s)
    run systemctl start knock && fail "no configuration" "systemctl start succeeded without /etc/knockd.conf"
    line=$(journal_since "$t" | grep -m1 'examples/knockd.conf') ||
        fail "no configuration" "no journal line points at the example"
    run systemctl stop knock
    run systemctl reset-failed knock
    ok "systemctl start without /etc/knockd.conf" "fails; journal: ${line#*: }"

    # What the operator does with sudoedit: the example, their sequence's door held open
    # long enough for this walk, its start and stop commands for both families, -v.
    run cp /usr/share/doc/knock/examples/knockd.conf /etc/knockd.conf
    sed -i -e 's/^\(\s*\)# \(st[a-z_6]*_command\)/\1\2/' -e 's/^\(\s*cmd_timeout\s*=\).*/\1 900/' \
        /etc/knockd.conf
    sed -i 's/^KNOCK_OPTS=.*/KNOCK_OPTS="-v"/' /etc/default/knock
    checked=$(knock-user check 2>&1) || fail "knock-user check" "$checked"
    ! grep -q warning <<<"$checked" || fail "knock-user check" "$checked"
    ok "knock-user check" "$(head -n 1 <<<"$checked"); $(grep -c '_command' /etc/knockd.conf) commands, no warning"

    t=$(date +%s)
    run systemctl enable --now knock || fail "enable --now" "systemctl enable --now knock failed"
    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] ||
        fail "enable --now" "knock.service is $(prop ActiveState)/$(prop SubState)"
    ok "systemctl enable --now knock" "$(systemctl is-enabled knock), active; status: $(prop StatusText)"

    starts=$(journal_since "$t" | grep -c 'starting up, listening on kv0')
    ident=$(journal_since "$t" | grep -m1 'starting up' | awk '{print $5}')
    [ "$starts" = 1 ] || fail "one journal copy" "'starting up' is in the journal $starts times"
    case $ident in knockd\[*) ;; *) fail "one journal copy" "the line comes from $ident, not knockd" ;; esac
    maps=$(journal_since "$t" | grep -m1 'maps use' | sed 's/.*knock: //')
    case $maps in "maps use "[1-9]*KiB*) ;; *) fail "-v maps line" "${maps:-no maps line}" ;; esac
    ok "journal" "each line once, from ${ident%%[*}; -v: ${maps:0:80}..."

    pid=$(prop MainPID)
    mounts=$(awk '$5 ~ "^/sys/(kernel|module|devices|fs|fs/bpf)$" || $5 == "/proc/sys" { split($6, o, ","); printf "%s %s, ", $5, o[1] }' "/proc/$pid/mountinfo")
    for expected in "/sys/fs/bpf rw" "/sys/fs ro" "/sys/kernel ro" "/sys/module ro" "/sys/devices ro" "/proc/sys ro"; do
        # Each exactly, as "MOUNT OPTION, " in the list.
        case ", $mounts" in *", $expected, "*) ;; *)
            awk '$5 ~ "^/(sys|proc/sys)" { print "SYSTEM LOG mountinfo " $0 }' "/proc/$pid/mountinfo" | head -n 40
            fail "sandbox" "not $expected ($(systemctl --version | head -n 1)); the daemon's mounts: $mounts" ;;
        esac
    done
    caps=$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")
    ok "sandbox" "${mounts%, }; CapEff $caps"

    # ---- The gate and a knock, IPv4 and IPv6 ----
    connects $SERVER4 && fail "gate" "port 22 answers over IPv4 before the knock"
    connects $SERVER6 && fail "gate" "port 22 answers over IPv6 before the knock"
    ok "gate" "port 22 does not answer the client over IPv4 or IPv6"
    for family in 4 6; do
        eval server=\$SERVER$family client=\$CLIENT$family
        t=$(date +%s)
        knock_from_client "$server" || fail "knock IPv$family" "the client cannot knock"
        within 10 connects "$server" || fail "knock IPv$family" "port 22 stays shut after the knock"
        line=$(journal_since "$t" | grep -m1 "$client: openSSH: OPEN SESAME") ||
            fail "knock IPv$family" "no OPEN SESAME in the journal"
        tables=iptables
        [ $family = 4 ] || tables=ip6tables
        within 10 sh -c "$tables -S INPUT | grep -q -- '-s $client'" ||
            fail "start command IPv$family" "no $tables rule for $client"
        ok "knock IPv$family" "port 22 answers; journal: ${line#*]: }; start command: $($tables -S INPUT | grep -m1 -- "-s $client")"
    done

    # ---- Restart and upgrade, with a stranger probing ----
    probe_counters_reset
    probe_start
    sleep 2
    pid1=$(prop MainPID)
    t=$(date +%s)
    run systemctl restart knock || fail "restart" "systemctl restart knock failed"
    pid2=$(prop MainPID)
    line=$(journal_since "$t" | grep -m1 'took over the state') || fail "restart" "no take-over line"
    ok "systemctl restart knock" "pid $pid1 -> $pid2; journal: ${line#*: }"
    t=$(date +%s)
    run apt-get install -y "$W/knock-upgrade.deb" || fail "upgrade" "apt-get install of the upgrade failed"
    pid3=$(prop MainPID)
    [ "$pid3" != "$pid2" ] || fail "upgrade" "the upgrade did not restart the daemon"
    [ "$(prop ActiveState)" = active ] || fail "upgrade" "knock.service is $(prop ActiveState) after the upgrade"
    has_line "$t" 'took over the state' || fail "upgrade" "the upgraded daemon took nothing over"
    sleep 2
    probe_stop
    sent=$(syns)
    answered=$(synacks)
    [ "$sent" -gt 100 ] || fail "no hole" "the stranger sent only $sent SYNs"
    [ "$answered" = 0 ] || fail "no hole" "the stranger got $answered SYN-ACKs from port 22"
    connects $SERVER4 && connects $SERVER6 || fail "doors kept" "the client's doors closed"
    open=$(knock-user status 2>/dev/null | grep -c "openSSH")
    ok "apt install ./knock_*.deb (upgrade)" "$version -> $(dpkg-query -W -f '${Version}' knock), pid $pid2 -> $pid3; status: $(prop StatusText)"
    ok "no hole" "the stranger sent $sent SYNs to port 22 during restart and upgrade, got $answered SYN-ACKs; the client's doors stayed open (IPv4, IPv6)"

    # ---- Reload ----
    pid=$(prop MainPID)
    cat >>/etc/knockd.conf <<'EOF'

[openHTTPS]
	sequence    = 12345,54321,24680
	seq_timeout = 5
	protect     = 443:tcp
EOF
    t=$(date +%s)
    run systemctl reload knock || fail "reload" "systemctl reload knock failed"
    within 10 has_line "$t" 'configuration reloaded: 2 door(s)' || fail "reload" "no reload line"
    [ "$(prop MainPID)" = "$pid" ] || fail "reload" "the daemon was restarted, not reloaded"
    within 5 sh -c "systemctl show -P StatusText knock | grep -q '2 door(s)'" || fail "reload" "status: $(prop StatusText)"
    ok "systemctl reload knock" "journal: configuration reloaded: 2 door(s); status: $(prop StatusText)"

    cp /etc/knockd.conf "$STATE/good.conf"
    echo "sequence = 1,2,3" >>/etc/knockd.conf
    echo "[broken" >>/etc/knockd.conf
    t=$(date +%s)
    message=$(systemctl reload knock 2>&1) && fail "reload broken" "systemctl reload knock succeeded with a broken file"
    why=$(journal_since "$t" | grep -m1 'knockd.conf:' | sed 's/.*knock-user: //')
    [ -n "$why" ] || fail "reload broken" "no checker message in the journal"
    [ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] ||
        fail "reload broken" "the daemon did not keep running"
    connects $SERVER4 || fail "reload broken" "the open door closed"
    cp "$STATE/good.conf" /etc/knockd.conf
    ok "systemctl reload knock (broken file)" "reload fails, the daemon keeps its configuration; journal: ${why:0:120}"

    # ---- An interface that is not there yet, then one that goes and comes back ----
    # The start waits for kv9 (READY=1 once it is attached), saying so in the status line;
    # the daemon attaches as soon as kv9 appears, and again when it is made anew.
    sed -i 's/^KNOCK_OPTS=.*/KNOCK_OPTS="-v -i kv9"/' /etc/default/knock
    t=$(date +%s)
    run systemctl restart --no-block knock
    within 20 sh -c 'systemctl show -P StatusText knock | grep -q "waiting for kv9"' ||
        fail "missing interface" "no waiting status: $(prop ActiveState)/$(prop SubState), $(prop StatusText)"
    state="$(prop ActiveState)/$(prop SubState)"
    [ "$state" = activating/start ] || fail "missing interface" "knock.service is $state while kv9 is missing"
    waiting=$(journal_since "$t" | grep -m1 'kv9 does not exist') || fail "missing interface" "no journal line says it waits"
    shown=$(knock-user status -i kv9 2>&1) && fail "missing interface" "knock-user status -i kv9 exits 0 while kv9 is missing"
    grep -q "missing: kv9" <<<"$shown" || fail "missing interface" "status does not show kv9 missing: $shown"
    run ip link add kv9 type veth peer name kw9
    run ip link set kv9 up
    run ip link set kw9 up
    within 5 sh -c '[ "$(systemctl show -P SubState knock)" = running ]' ||
        fail "missing interface" "knock.service did not start once kv9 appeared: $(prop ActiveState)/$(prop SubState)"
    appeared=$(journal_since "$t" | grep -m1 'kv9 appeared') || fail "missing interface" "no journal line says kv9 appeared"
    ip -d link show kv9 | grep -q 'prog/xdp' || fail "missing interface" "no XDP program on kv9"
    ok "missing interface" "$state, status: ${shown%%(*}...; journal: ${waiting#*knock: }; then ${appeared#*knock: }; running, status: $(prop StatusText)"

    t=$(date +%s)
    run ip link del kv9
    within 5 has_line "$t" 'kv9 went away' || fail "interface re-created" "no journal line says kv9 went away"
    knock-user status -i kv9 2>/dev/null | grep -q "missing: kv9" || fail "interface re-created" "status does not show kv9 missing"
    run ip link add kv9 type veth peer name kw9
    within 3 has_line "$t" 'kv9 is back' || fail "interface re-created" "kv9 was not attached again"
    ip -d link show kv9 | grep -q 'prog/xdp' || fail "interface re-created" "no XDP program on the new kv9"
    knock-user status -i kv9 >/dev/null 2>&1 || fail "interface re-created" "status still shows kv9 missing"
    [ "$(prop ActiveState)" = active ] || fail "interface re-created" "knock.service is $(prop ActiveState)"
    ok "interface re-created" "$(journal_since "$t" | grep -m1 'kv9 went away' | sed 's/.*knock: //'); $(journal_since "$t" | grep -m1 'kv9 is back' | sed 's/.*knock: //')"
    run knock-user stop -i kv9
    run ip link del kv9
    sed -i 's/^KNOCK_OPTS=.*/KNOCK_OPTS="-v"/' /etc/default/knock
    run systemctl restart knock || fail "restart" "knock.service does not start on kv0 again"
    connects $SERVER4 || fail "restart" "the client's door closed"

    echo 2 >"$STATE/phase"
    ok "reboot" "knock.service is $(systemctl is-enabled knock); rebooting"
    systemctl reboot --no-block
    exit 0
fi

# ---- Phase 2: after the reboot ----
within 30 sh -c '[ "$(systemctl show -P SubState knock)" = running ]' ||
    fail "boot" "knock.service is $(prop ActiveState)/$(prop SubState) after the boot"
route=$(ip route show default | awk '{print $5; exit}')
guards=$(journalctl -b -u knock -o cat --no-pager | grep -m1 'starting up, listening on')
[ "$guards" = "starting up, listening on $route" ] || fail "boot" "default route on $route, journal: $guards"
connects $SERVER4 && fail "boot" "port 22 answers before a knock"
knock_from_client $SERVER4 || fail "boot" "the client cannot knock"
within 10 connects $SERVER4 || fail "boot" "port 22 stays shut after the knock"
ok "boot" "enabled at boot: $guards (the default route's); status: $(prop StatusText); a knock opens port 22"

# ---- systemctl stop keeps the gate ----
probe_counters_reset
t=$(date +%s)
run systemctl stop knock || fail "systemctl stop" "systemctl stop knock failed"
line=$(journal_since "$t" | grep -m1 'stays attached') || fail "systemctl stop" "no line says the program stays"
xdp_on || fail "systemctl stop" "no XDP program on kv0 after systemctl stop"
connects $SERVER4 || fail "systemctl stop" "the client's door closed"
probe_start
sleep 3
probe_stop
[ "$(synacks)" = 0 ] || fail "systemctl stop" "the stranger got SYN-ACKs with the daemon stopped"
daemon=$(knock-user status | grep -m1 'daemon:' | sed 's/^ *//')
ok "systemctl stop knock" "journal: ${line#*]: }; kv0 still has its XDP program; the stranger sent $(syns) SYNs, got 0 SYN-ACKs; the client's door is open; status: $daemon"

# ---- knock-user stop ----
# With a daemon: it takes the doors over again at start, then closes them as Cmd_Timeout does.
run systemctl start knock || fail "knock-user stop" "knock.service does not start again"
said=$(knock-user stop 2>&1) || fail "knock-user stop" "$said"
xdp_on && fail "knock-user stop" "kv0 still has an XDP program"
[ ! -e /sys/fs/bpf/knock/kv0 ] || fail "knock-user stop" "/sys/fs/bpf/knock/kv0 is still there"
iptables -S INPUT | grep -q -- "-s $CLIENT4" && fail "knock-user stop" "the stop command did not run"
knock-user status >/dev/null 2>&1 && fail "knock-user stop" "knock-user status exits 0 with nothing attached"
unit="$(prop ActiveState)/$(prop SubState) ($(prop Result))"
[ "$unit" = "inactive/dead (success)" ] || fail "knock-user stop" "knock.service is $unit"
connects $SERVER4 || fail "knock-user stop" "port 22 does not answer without the gate"
ok "knock-user stop" "$(tr '\n' ' ' <<<"$said")- the stop command removed the iptables rule, kv0 has no XDP program, knock.service $unit, status exits non-zero"

# ---- apt remove, with the daemon running; then purge ----
run systemctl start knock || fail "apt remove" "knock.service does not start again"
run apt-get remove -y knock || fail "apt remove" "apt-get remove failed"
xdp_on && fail "apt remove" "kv0 still has an XDP program"
[ ! -e /usr/sbin/knock-user ] || fail "apt remove" "/usr/sbin/knock-user is still there"
[ ! -e /sys/fs/bpf/knock ] || fail "apt remove" "/sys/fs/bpf/knock is still there"
ok "apt remove knock" "the running daemon stopped and detached; kv0 has no XDP program; /etc/default/knock stays until purge"
run apt-get purge -y knock || fail "apt purge" "apt-get purge failed"
left=$(ls -d /etc/default/knock /var/lib/knock /sys/fs/bpf/knock /usr/lib/systemd/system/knock.service \
    /etc/systemd/system/multi-user.target.wants/knock.service /usr/share/doc/knock 2>/dev/null)
[ -z "$left" ] || fail "apt purge" "left behind: $left"
dpkg-query -W knock >/dev/null 2>&1 && fail "apt purge" "dpkg still knows knock"
ok "apt purge knock" "nothing left (/etc/default/knock, /var/lib/knock, /sys/fs/bpf/knock, the unit); /etc/knockd.conf stays, knockd's file"

say "DONE ok"
systemctl poweroff --no-block
