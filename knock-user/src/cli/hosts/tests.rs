use super::*;

const FILE: &str = "/home/alice/.config/knock/hosts";

fn parse_str(text: &str) -> Result<Vec<SavedHost>, HostsError> {
    parse(Path::new(FILE), text)
}

#[test]
fn a_saved_host_reads_back_with_every_key() {
    let hosts = parse_str(
        "# my servers\n\
         [myserver]\n\
         Host     = server.example.org\n\
         door     = openSSH   # the SSH door\n\
         key_file = myserver.key\n\
         key_id   = 1234\n\
         source   = auto\n\
         stun     = 203.0.113.1:3478\n\
         port     = 62203\n\
         family   = 6\n\
         \n\
         [pi]\n\
         host = 198.51.100.1\n\
         door = openSSH\n\
         source = 203.0.113.9\n",
    )
    .unwrap();
    assert_eq!(
        hosts[0],
        SavedHost {
            name: "myserver".into(),
            host: "server.example.org".into(),
            door: "openSSH".into(),
            key_file: Some(PathBuf::from("/home/alice/.config/knock/myserver.key")),
            key_id: Some(1234),
            source: Some(Source::Auto),
            stun: Some("203.0.113.1:3478".into()),
            port: Some(62203),
            family: Some(Family::V6),
        }
    );
    assert_eq!(
        hosts[1].source,
        Some(Source::Address("203.0.113.9".parse().unwrap()))
    );
    assert_eq!(hosts[1].key_file, None);
}

#[test]
fn mistakes_name_the_file_and_the_line() {
    for (text, line, needle) in [
        (
            "[a]\nhost = h\ndoor = d\nsauce = auto\n",
            4,
            "unknown key `sauce`",
        ),
        ("host = h\n", 1, "`host` outside any [host] section"),
        (
            "[a]\nhost = h\ndoor = d\nport = 0\n",
            4,
            "port: `0` is not a port",
        ),
        (
            "[a]\nhost = h\ndoor = d\nsource = somewhere\n",
            4,
            "is neither `auto` nor an address",
        ),
        ("[a]\nhost = h\nhost = i\n", 3, "host: set twice"),
        (
            "[a]\nhost = h\ndoor = d\n[a]\n",
            4,
            "host `a` is saved twice (first on line 1)",
        ),
        ("[a]\nhost = h\n", 1, "host `a` has no `door =`"),
        ("[a]\njust words\n", 2, "expected `key = value`"),
        ("[a b]\n", 1, "a section header is `[name]`"),
        (
            "[a]\nhost = h\ndoor = d\nfamily = 5\n",
            4,
            "`5` is not 4 or 6",
        ),
    ] {
        let error = parse_str(text).unwrap_err();
        assert_eq!(error.line, line, "{text}: {error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{FILE}:{line}: ")),
            "{message}"
        );
        assert!(message.contains(needle), "{text}: {message}");
    }
}

#[test]
fn a_missing_file_holds_no_hosts() {
    assert!(
        load(Path::new("/nonexistent/knock/hosts"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_written_section_reads_back() {
    let host = SavedHost {
        name: "myserver".into(),
        host: "198.51.100.1".into(),
        door: "openSSH".into(),
        source: Some(Source::Auto),
        stun: Some("203.0.113.1:3478".into()),
        ..SavedHost::default()
    };
    let text = section(&host, "myserver.key");
    let read = parse_str(&text).unwrap();
    assert_eq!(
        read,
        [SavedHost {
            key_file: Some(PathBuf::from("/home/alice/.config/knock/myserver.key")),
            ..host
        }]
    );
}

#[test]
fn private_files_are_mode_0600_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("knock-hosts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = dir.join("sub/spa.key");
    append_private(&dir.join("sub/hosts"), "[a]\n").unwrap();
    append_private(&dir.join("sub/hosts"), "[b]\n").unwrap();
    write_new_private(&key, "1 00\n").unwrap();
    let again = write_new_private(&key, "2 00\n").unwrap_err();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (key_mode, hosts_mode, dir_mode) = (
        mode(&key),
        mode(&dir.join("sub/hosts")),
        mode(&dir.join("sub")),
    );
    let hosts = std::fs::read_to_string(dir.join("sub/hosts")).unwrap();
    let kept = std::fs::read_to_string(&key).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((key_mode, hosts_mode, dir_mode), (0o600, 0o600, 0o700));
    assert_eq!(hosts, "[a]\n\n[b]\n");
    assert_eq!(kept, "1 00\n");
    assert!(
        again.to_string().contains("knock does not overwrite keys"),
        "{again}"
    );
}
