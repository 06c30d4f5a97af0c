use super::*;

fn ports(list: &[ProtoPort]) -> Effect {
    Effect::Opens(list.iter().copied().collect())
}

const TCP_22: ProtoPort = ProtoPort::tcp(22);

#[test]
fn debians_shipped_commands_mean_what_they_meant_under_knockd() {
    assert_eq!(
        effect("/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"),
        ports(&[TCP_22])
    );
    assert_eq!(
        effect("/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"),
        Effect::RemovesOnly
    );
    assert_eq!(
        effect("/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%"),
        ports(&[ProtoPort::tcp(443)])
    );
}

#[test]
fn iptables_rules_that_accept_the_knocker_open_their_ports() {
    for (command, expected) in [
        (
            "/sbin/iptables -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT",
            vec![TCP_22],
        ),
        (
            "ip6tables -I INPUT 1 --source %IP% --protocol udp --destination-port 51820 --jump ACCEPT",
            vec![ProtoPort::udp(51820)],
        ),
        (
            "iptables-nft -I INPUT -s %IP% -p tcp -m multiport --dports 22,443 -j ACCEPT -m comment --comment knock",
            vec![TCP_22, ProtoPort::tcp(443)],
        ),
        (
            "sudo /usr/sbin/iptables -w -A INPUT -s %IP% -p tcp --dport=2222 -j ACCEPT",
            vec![ProtoPort::tcp(2222)],
        ),
        (
            // Take out a duplicate first, then add: still an opening.
            "iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT 2>/dev/null; iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
            vec![TCP_22],
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT && logger opened for %IP%",
            vec![TCP_22],
        ),
        (
            "iptables -A INPUT -s %IP% -p 17 --dport 53 -j ACCEPT >> /var/log/knock 2>&1",
            vec![ProtoPort::udp(53)],
        ),
    ] {
        assert_eq!(effect(command), ports(&expected), "{command}");
    }
}

#[test]
fn commands_that_only_take_access_away_open_nothing() {
    for command in [
        "/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
        "iptables -F KNOCKD",
        "nft delete element inet knock knock4 { %IP% . tcp . 22 }",
        "nft 'delete rule inet filter input handle 7'",
        "ufw delete allow from %IP% to any port 22",
        "knock_add -x -f %IP% -d 22",
    ] {
        assert_eq!(effect(command), Effect::RemovesOnly, "{command}");
    }
}

#[test]
fn nft_rules_and_elements_open_their_ports() {
    for (command, expected) in [
        (
            "nft add rule inet filter input ip saddr %IP% tcp dport 22 accept",
            vec![TCP_22],
        ),
        (
            "/usr/sbin/nft 'insert rule inet filter input ip6 saddr %IP% tcp dport {22,443} accept'",
            vec![TCP_22, ProtoPort::tcp(443)],
        ),
        (
            "nft add element inet knock knock4 { %IP% . tcp . 22 timeout 10s }",
            vec![TCP_22],
        ),
        (
            "nft add element inet filter allowed '{ %IP% . udp . 51820, %IP% . tcp . 22 }'",
            vec![TCP_22, ProtoPort::udp(51820)],
        ),
    ] {
        assert_eq!(effect(command), ports(&expected), "{command}");
    }
}

#[test]
fn ufw_rules_from_the_knocker_open_their_ports_for_both_protocols_unless_told() {
    assert_eq!(
        effect("ufw allow from %IP% to any port 22"),
        ports(&[TCP_22, ProtoPort::udp(22)])
    );
    assert_eq!(
        effect("/usr/sbin/ufw insert 1 allow proto tcp from %IP% to any port 22,2222"),
        ports(&[TCP_22, ProtoPort::tcp(2222)])
    );
    assert_eq!(
        effect("ufw allow in on eth0 from %IP% port 40000 to any port 22 proto tcp"),
        ports(&[TCP_22]),
        "the port after `from` is the source's"
    );
}

#[test]
fn anything_knock_cannot_read_for_certain_is_unclear() {
    for command in [
        // Every port, or every source.
        "iptables -A INPUT -s %IP% -j ACCEPT",
        "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
        "ufw allow 22/tcp",
        "ufw allow from %IP%",
        // Another target, another table, a negation, a range.
        "iptables -A INPUT -s %IP% -p tcp --dport 22 -j LOG",
        "iptables -I INPUT -s %IP% -p tcp --dport 22 -j DROP",
        "iptables -D INPUT -s %IP% -j DROP",
        "iptables -t nat -A PREROUTING -s %IP% -p tcp --dport 22 -j ACCEPT",
        "iptables -A INPUT -s %IP% -p tcp ! --dport 22 -j ACCEPT",
        "iptables -A INPUT -s %IP% -p tcp --dport 8000:8100 -j ACCEPT",
        "iptables -A INPUT -s %IP% -p all --dport 22 -j ACCEPT",
        // A set whose meaning lies in some other rule.
        "nft add element inet filter ssh_clients { %IP% }",
        "nft add rule inet filter input ip saddr %IP% th dport 22 accept",
        // Other programs, substitutions, broken quoting, nothing at all.
        "/usr/local/bin/open-door %IP%",
        "echo %IP% >> /tmp/knocked",
        "iptables -A INPUT -s $(cat /etc/knock-ip) -p tcp --dport 22 -j ACCEPT",
        "iptables -A INPUT -s '%IP% -p tcp --dport 22 -j ACCEPT",
        "knock_add -t -i -f %IP% -d 22",
        "true",
        "",
    ] {
        assert_eq!(effect(command), Effect::Unclear, "{command}");
    }
}

#[test]
fn a_comment_in_a_command_is_the_shells() {
    assert_eq!(
        effect("iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT # was 2222"),
        ports(&[TCP_22])
    );
}
