//! Telling systemd how the daemon is doing (sd_notify(3)): knock.service is `Type=notify`, so
//! `systemctl start` returns once the daemon says READY=1, which it says only when the program
//! is attached and the configuration pushed; a daemon that exits first fails the start.
//!
//! The protocol is one datagram to the socket named in $NOTIFY_SOCKET (a path, or an abstract
//! name written with a leading `@`); without it (not under systemd) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for services that may notify.
const SOCKET_VARIABLE: &str = "NOTIFY_SOCKET";

/// Sends `state` (lines like `READY=1`, `STATUS=...`) to systemd, if it listens. A failure is
/// returned, not fatal: the caller decides whether to say so.
pub fn notify(state: &str) -> std::io::Result<()> {
    send(std::env::var_os(SOCKET_VARIABLE).as_deref(), state)
}

fn send(socket: Option<&std::ffi::OsStr>, state: &str) -> std::io::Result<()> {
    let Some(name) = socket else {
        return Ok(());
    };
    let address = address(name.as_encoded_bytes())?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// The socket address $NOTIFY_SOCKET names: `@name` is abstract, anything else a path.
fn address(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    match name {
        [] => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is empty",
        )),
        [b'@', abstract_name @ ..] => SocketAddr::from_abstract_name(abstract_name),
        path => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path)),
    }
}

/// One line of STATUS=: what the daemon guards and what it waits for, for `systemctl status`.
pub fn status_line(
    attached: &[String],
    missing: &[String],
    mode: &str,
    doors: usize,
    open: usize,
) -> String {
    let guarding = match (attached.is_empty(), missing.is_empty()) {
        (false, true) => format!("guarding {} ({mode} XDP)", attached.join(", ")),
        (false, false) => format!(
            "guarding {} ({mode} XDP), waiting for {} (not guarded)",
            attached.join(", "),
            missing.join(", ")
        ),
        (true, _) => format!("waiting for {} (not guarded)", missing.join(", ")),
    };
    format!("STATUS={guarding}: {doors} door(s), {open} open")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt as _;

    #[test]
    fn an_at_sign_names_an_abstract_socket_and_anything_else_a_path() {
        let abstract_address = address(b"@/org/freedesktop/systemd1/notify/42").unwrap();
        assert_eq!(
            abstract_address.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify/42"[..])
        );
        let path = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address(b"").is_err());
    }

    #[test]
    fn a_notification_arrives_as_one_datagram_on_an_abstract_socket() {
        let name = format!("knock-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let variable = std::ffi::OsString::from(format!("@{name}"));
        send(Some(&variable), "READY=1\nSTATUS=guarding kv0").unwrap();
        let mut buffer = [0u8; 64];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=guarding kv0");
    }

    #[test]
    fn the_status_line_says_what_is_guarded_and_what_is_waited_for() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            status_line(&names(&["eth0"]), &[], "native", 1, 0),
            "STATUS=guarding eth0 (native XDP): 1 door(s), 0 open"
        );
        assert_eq!(
            status_line(&names(&["eth0"]), &names(&["ppp0"]), "generic", 2, 1),
            "STATUS=guarding eth0 (generic XDP), waiting for ppp0 (not guarded): 2 door(s), 1 open"
        );
        assert_eq!(
            status_line(&[], &names(&["ppp0"]), "no", 1, 0),
            "STATUS=waiting for ppp0 (not guarded): 1 door(s), 0 open"
        );
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        assert!(send(None, "READY=1").is_ok());
    }
}
