//! Debian's own /etc/knockd.conf (knockd 0.8-2's, `debian-knockd.conf` beside this file, copied
//! verbatim), played against real knockd and against knock. The server drops new connections
//! to SSH by default, as a knockd user's firewall does, so what each door's command means shows:
//! `[openSSH]` appends an ACCEPT for port 22, `[closeSSH]` deletes it again (knocking it opens
//! nothing), `[openHTTPS]` runs Debian's helper for port 443. Under knock the doors protect
//! what their commands open: 22, nothing, 443.

use std::path::Path;

use knock_lab::knockd::Knockd;
use knock_lab::{SERVER_V4, SHORT, Scene, connects};

const DEBIAN: &str = include_str!("debian-knockd.conf");
const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");

const CLOSE_SSH: [&str; 3] = ["9000", "8000", "7000"];
const OPEN_SSH: [&str; 3] = ["7000", "8000", "9000"];
const OPEN_HTTPS: [&str; 4] = ["12345", "54321", "24680", "13579"];

/// What one implementation did with the file.
struct Played {
    log: Vec<String>,
    /// Whether port 22 took a connection after `[closeSSH]`, after `[openHTTPS]` and after
    /// `[openSSH]`.
    ssh: [bool; 3],
    /// Whether port 443 took a connection before and after `[openHTTPS]`.
    https: [bool; 2],
}

/// A knockd user's firewall: new connections to SSH are dropped unless a rule appended to
/// INPUT accepts them; everything else is accepted.
fn drop_ssh_by_default(scene: &Scene) {
    for rule in [
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT ! -p tcp -j ACCEPT",
        "-A INPUT -p tcp ! --dport 22 -j ACCEPT",
        "-P INPUT DROP",
    ] {
        let output = scene
            .lab
            .server
            .command("iptables")
            .args(rule.split(' '))
            .output()
            .expect("iptables runs");
        assert!(output.status.success(), "iptables {rule}: {output:?}");
    }
}

fn play(real_knockd: bool) -> Played {
    let mut scene = Scene::build(DEBIAN)
        .listen_only(&[22, 443])
        .stopped()
        .start(Path::new(BINARY))
        .expect("the scene");
    drop_ssh_by_default(&scene);
    let knockd = if real_knockd {
        Some(
            Knockd::start(&scene.lab.server, &scene.lab.server_if, &scene.config, &[])
                .expect("knockd starts"),
        )
    } else {
        scene.start_daemon(&[]).expect("knock-user run starts");
        None
    };
    let connects_to = |port| connects(&scene.lab.client, SERVER_V4.into(), port, SHORT).is_ok();
    let knock = |ports: &[&str]| {
        let mut args = vec!["198.51.100.1"];
        args.extend_from_slice(ports);
        scene.real_knock(&args);
        // The start command runs in the background.
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    knock(&CLOSE_SSH);
    let ssh_after_close = connects_to(22);
    let https_before = connects_to(443);
    knock(&OPEN_HTTPS);
    let https_after = connects_to(443);
    let ssh_after_https = connects_to(22);
    knock(&OPEN_SSH);
    let ssh_after_open = connects_to(22);
    let log = match knockd {
        Some(knockd) => knockd.stop(),
        None => scene.stop_daemon().0,
    };
    Played {
        log,
        ssh: [ssh_after_close, ssh_after_https, ssh_after_open],
        https: [https_before, https_after],
    }
}

/// knockd's lines for the knocks and the commands they ran, in order.
fn knockd_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|line| line.trim())
        .filter(|line| {
            line.contains(": running command: ")
                || line.ends_with(": OPEN SESAME")
                || line
                    .rsplit_once(": Stage ")
                    .is_some_and(|(_, n)| n.parse::<u8>().is_ok())
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn debians_shipped_configuration_means_under_knock_what_it_means_under_knockd() {
    let knockd = play(true);
    let knock = play(false);
    let logs = format!(
        "--- real knockd ---\n{}\n--- knock ---\n{}",
        knockd.log.join("\n"),
        knock.log.join("\n")
    );
    // What knockd shows: knocking [closeSSH] opens nothing, [openSSH] opens SSH.
    assert_eq!(
        knockd.ssh,
        [false, false, true],
        "real knockd: SSH after closeSSH, openHTTPS, openSSH\n{logs}"
    );
    // knock does the same, and [openHTTPS] opens 443, not 22.
    assert_eq!(
        knock.ssh,
        [false, false, true],
        "knock: SSH after closeSSH, openHTTPS, openSSH\n{logs}"
    );
    assert_eq!(
        knock.https,
        [false, true],
        "knock: HTTPS before and after openHTTPS\n{logs}"
    );
    // knockd shows the meaning of [openHTTPS] in the command it runs; both run the same ones,
    // after the same lines for the same knocks, the last stage included.
    let lines = knockd_lines(&knockd.log);
    assert!(
        lines.contains(
            &"openHTTPS: running command: /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 \
              -f 198.51.100.2"
                .to_owned()
        ),
        "{logs}"
    );
    assert!(
        lines.contains(&"198.51.100.2: openHTTPS: Stage 4".to_owned()),
        "{logs}"
    );
    assert_eq!(knockd_lines(&knock.log), lines, "{logs}");
}
