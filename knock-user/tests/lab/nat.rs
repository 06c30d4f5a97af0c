//! SPA from behind NAT, as a laptop at home sends it: the client sits behind a router that
//! masquerades with nftables, the server outside. The packet is signed for an address, and the
//! server checks it against the address the packet arrives from, the router's. `knock-user
//! keygen --save-host` makes the key and the saved host in one step; `knock-user spa NAME` with
//! `source = auto` asks the lab's STUN server which address that is, signs it, and gets in.
use crate::common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{BINARY, SHORT, TempDir, text};
use knock_lab::nat::{NAT_CLIENT, NAT_PUBLIC, NAT_SERVER, NatLab};
use knock_lab::stun::StunResponder;
use knock_lab::{Daemon, Listener, connects};

const STUN_PORT: u16 = 3478;
const WAIT: Duration = Duration::from_secs(10);

/// `knock-user ARGS` in the client's namespace, with the client's home directory.
fn client(lab: &NatLab, home: &Path, args: &[&str]) -> Output {
    lab.client
        .command(BINARY)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("knock-user runs")
}

#[test]
fn spa_with_source_auto_signs_the_address_stun_reports_and_gets_in_through_the_nat() {
    let lab = NatLab::new().expect("the NAT lab builds");
    assert!(
        lab.nat_rules().expect("nft runs").contains("masquerade"),
        "the router masquerades"
    );
    let dir = TempDir::new(&lab.server_if);
    let home = dir.path("home");
    std::fs::create_dir_all(&home).expect("a home");
    let stun = StunResponder::start(&lab.server, SocketAddr::new(NAT_SERVER.into(), STUN_PORT))
        .expect("the STUN server listens");

    // The client makes its key and saves the host in one step; the line goes to the server.
    let made = client(
        &lab,
        &home,
        &[
            "keygen",
            "--comment",
            "laptop",
            "--save-host",
            "myserver",
            "--host",
            &NAT_SERVER.to_string(),
            "--door",
            "openSSH",
            "--source",
            "auto",
            "--stun",
            &format!("{NAT_SERVER}:{STUN_PORT}"),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let key_line = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let key_file = home.join(".config/knock/myserver.key");
    let mode = std::fs::metadata(&key_file)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's alone");
    std::fs::write(dir.path("keys"), format!("{key_line}\n")).expect("the server's keys");
    let config = dir.path("knockd.conf");
    std::fs::write(
        &config,
        format!(
            "[options]\nSPA_Keys = {}\n[openSSH]\nSPA = yes\n",
            dir.path("keys").display()
        ),
    )
    .expect("the configuration");
    let _ssh = Listener::start(&lab.server, 22).expect("sshd stands in");
    let daemon = Daemon::start(
        &lab.server,
        Path::new(BINARY),
        &[
            "--config",
            &config.to_string_lossy(),
            "--interface",
            &lab.server_if,
            "--ephemeral",
            "-v",
        ],
    )
    .expect("knock-user run starts");
    let ssh = || connects(&lab.client, NAT_SERVER.into(), 22, SHORT);
    assert!(ssh().is_err(), "SSH is shut before any SPA packet");

    // Signed for the client's own address, the packet fails the MAC: the server sees the NAT.
    let local = client(
        &lab,
        &home,
        &["spa", "--source", &NAT_CLIENT.to_string(), "myserver"],
    );
    assert!(local.status.success(), "{}", text(&local));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        ssh().is_err(),
        "a packet signed for the inside address opens nothing"
    );

    // With the saved `source = auto`: STUN says what the server sees, and the door opens.
    let sent = client(&lab, &home, &["spa", "-v", "myserver"]);
    assert!(sent.status.success(), "{}", text(&sent));
    assert!(
        text(&sent).contains(&format!(
            "signed for source {NAT_PUBLIC} (as STUN server {NAT_SERVER}:{STUN_PORT} saw it)"
        )),
        "{}",
        text(&sent)
    );
    assert!(stun.answered() >= 1);
    daemon
        .wait_for(&format!("{NAT_PUBLIC}: openSSH: OPEN SESAME"), WAIT)
        .unwrap_or_else(|| panic!("no opening in:\n{}", daemon.log().join("\n")));
    assert!(ssh().is_ok(), "SSH gets in through the NAT");
    let refused = daemon.log();
    assert!(
        refused
            .iter()
            .any(|l| l.contains(&format!("{NAT_PUBLIC}: SPA packet refused"))),
        "the packet signed for the inside address was refused as the router's: {refused:#?}"
    );
}
