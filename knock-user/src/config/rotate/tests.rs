use super::*;

fn secret() -> Secret {
    Secret {
        door: "openSSH".into(),
        key: core::array::from_fn(|i| i as u8),
        period_s: 30,
        low: 10_000,
        high: 60_000,
        length: 3,
        exclude: BTreeSet::new(),
        udp: false,
    }
}

fn hex_of(bytes: &[u8]) -> String {
    hex(bytes)
}

/// RFC 4231, test cases 1 and 2: the HMAC-SHA256 the derivation stands on.
#[test]
fn hmac_sha256_matches_rfc_4231() {
    let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; 20]).unwrap();
    mac.update(b"Hi There");
    assert_eq!(
        hex_of(&mac.finalize().into_bytes()),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"what do ya want for nothing?");
    assert_eq!(
        hex_of(&mac.finalize().into_bytes()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// The reference vector of knock's derivation, for other implementations to check against:
/// key bytes 0..31, door `openSSH`, period 30 s, ports 10000-60000, length 3, period 60000000.
#[test]
fn the_derivation_matches_its_reference_vector() {
    let ports: Vec<u16> = secret()
        .sequence(60_000_000)
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, REFERENCE);
}

/// Computed independently with Python's hmac and hashlib from the description in the module
/// documentation; a change here breaks every client in the field.
const REFERENCE: [u16; 3] = [26962, 19211, 50567];

#[test]
fn a_sequence_has_distinct_ports_in_range_and_avoids_excluded_ones() {
    let mut s = secret();
    s.low = 20_000;
    s.high = 20_020;
    s.length = 5;
    s.exclude = (20_000..20_010).collect();
    for n in 0..200 {
        let ports: Vec<u16> = s.sequence(n).iter().map(|p| p.port).collect();
        assert_eq!(ports.len(), 5);
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 5, "{ports:?}");
        assert!(
            ports.iter().all(|p| (20_010..=20_020).contains(p)),
            "{ports:?}"
        );
    }
}

#[test]
fn neighbouring_periods_differ() {
    let s = secret();
    assert_ne!(s.sequence(7), s.sequence(8));
}

#[test]
fn a_secret_file_reads_back_as_written() {
    let mut s = secret();
    s.exclude = [22, 80].into();
    s.udp = true;
    assert_eq!(parse(Path::new("secret"), &s.to_file()).unwrap(), s);
}

#[test]
fn a_bad_secret_file_names_line_and_key() {
    let error = parse(Path::new("secret"), "door = d\nkey = 00\n").unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (2, Some("key")));
    let error = parse(Path::new("secret"), "door = d\n").unwrap_err();
    assert_eq!(error.key.as_deref(), Some("key"));
}
