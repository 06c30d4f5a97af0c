use super::*;

/// The transaction id of RFC 5769's samples.
const RFC_5769_ID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769, 2.2: the sample IPv4 response, with SOFTWARE, MESSAGE-INTEGRITY and FINGERPRINT
/// around the XOR-MAPPED-ADDRESS.
const RFC_5769_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

fn response(kind: u16, id: &TransactionId, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (attribute, value) in attributes {
        body.extend_from_slice(&attribute.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut message = kind.to_be_bytes().to_vec();
    message.extend_from_slice(&(body.len() as u16).to_be_bytes());
    message.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    message.extend_from_slice(id);
    message.extend_from_slice(&body);
    message
}

#[test]
fn a_binding_request_is_a_bare_header_with_the_cookie() {
    let message = request(&RFC_5769_ID);
    assert_eq!(
        &message[..8],
        &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]
    );
    assert_eq!(&message[8..], &RFC_5769_ID);
}

#[test]
fn rfc_5769s_ipv4_sample_reads_as_its_mapped_address() {
    assert_eq!(
        answer(&RFC_5769_IPV4_RESPONSE, &RFC_5769_ID),
        Answer::Mapped("192.0.2.1:32853".parse().unwrap())
    );
}

#[test]
fn rfc_5769s_ipv6_sample_reads_as_its_mapped_address() {
    // RFC 5769, 2.3: family 2, X-Port 0xa147, X-Address XORed with cookie and transaction.
    let value = [
        0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4,
        0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    ];
    let message = response(
        BINDING_SUCCESS,
        &RFC_5769_ID,
        &[(XOR_MAPPED_ADDRESS, &value)],
    );
    assert_eq!(
        answer(&message, &RFC_5769_ID),
        Answer::Mapped(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        )
    );
}

#[test]
fn an_old_server_s_plain_mapped_address_is_taken() {
    let value = [0x00, 0x01, 0x1f, 0x90, 203, 0, 113, 7];
    let message = response(BINDING_SUCCESS, &RFC_5769_ID, &[(MAPPED_ADDRESS, &value)]);
    assert_eq!(
        answer(&message, &RFC_5769_ID),
        Answer::Mapped("203.0.113.7:8080".parse().unwrap())
    );
}

#[test]
fn answers_to_other_requests_and_broken_ones_are_not_answers() {
    let mut other = RFC_5769_ID;
    other[0] ^= 1;
    assert_eq!(answer(&RFC_5769_IPV4_RESPONSE, &other), Answer::Unrelated);
    assert_eq!(
        answer(&RFC_5769_IPV4_RESPONSE[..40], &RFC_5769_ID),
        Answer::Unrelated,
        "cut short"
    );
    assert_eq!(answer(b"hello", &RFC_5769_ID), Answer::Unrelated);
    let mut no_cookie = RFC_5769_IPV4_RESPONSE;
    no_cookie[4] = 0;
    assert_eq!(answer(&no_cookie, &RFC_5769_ID), Answer::Unrelated);
    let overlong = response(
        BINDING_SUCCESS,
        &RFC_5769_ID,
        &[(XOR_MAPPED_ADDRESS, &[0, 1])],
    );
    assert_eq!(answer(&overlong, &RFC_5769_ID), Answer::Unrelated);
}

#[test]
fn an_error_response_says_its_code_and_reason() {
    let value = [0, 0, 4, 0, b'B', b'a', b'd'];
    let message = response(BINDING_ERROR, &RFC_5769_ID, &[(ERROR_CODE, &value)]);
    assert_eq!(
        answer(&message, &RFC_5769_ID),
        Answer::Error(400, "Bad".to_owned())
    );
}

#[test]
fn a_server_on_loopback_reports_the_address_it_sees() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = server.local_addr().unwrap();
    let responder = std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        // Lose the first request, as a network may: the client asks again.
        let _ = server.recv_from(&mut buffer).unwrap();
        let (len, from) = server.recv_from(&mut buffer).unwrap();
        assert_eq!(len, HEADER_LEN);
        let id: TransactionId = buffer[8..20].try_into().unwrap();
        let SocketAddr::V4(from4) = from else {
            panic!("IPv4 expected")
        };
        let mut value = vec![0, 1];
        value.extend_from_slice(&(from4.port() ^ 0x2112).to_be_bytes());
        for (byte, mask) in from4.ip().octets().iter().zip(MAGIC_COOKIE.to_be_bytes()) {
            value.push(byte ^ mask);
        }
        let message = response(BINDING_SUCCESS, &id, &[(XOR_MAPPED_ADDRESS, &value)]);
        server.send_to(&message, from).unwrap();
    });
    assert_eq!(
        public_address(address).unwrap(),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );
    responder.join().unwrap();
}

#[test]
fn a_silent_server_is_named_after_the_retries() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let error = ask(silent.local_addr().unwrap(), Duration::from_millis(10)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("did not answer (asked 4 times over 0.15 s)"),
        "{error}"
    );
}
