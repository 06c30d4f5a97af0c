//! TCP segments with odd flag sets, to knock ports and to the protected port. The rule: only a
//! SYN without ACK opens a connection, so only it meets the gate and only it knocks on the
//! default door; every segment to a knock port is dropped all the same.

use knock_common::counter::Counter::{AttemptReset, GateAllowed, KnockAccepted};
use knock_common::segment::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};

use super::*;

const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

/// Flag sets a scanner or a broken stack sends, by the name nmap and friends give them.
const ODD_FLAGS: [(&str, u8); 15] = [
    ("SYN+ACK", SYN | ACK),
    ("SYN+FIN", SYN | FIN),
    ("SYN+RST", SYN | RST),
    ("SYN+PSH", SYN | PSH),
    ("SYN+URG", SYN | URG),
    ("SYN+ECE+CWR", SYN | ECE | CWR),
    ("a null segment", 0),
    ("a xmas segment", FIN | PSH | URG),
    ("ACK", ACK),
    ("FIN", FIN),
    ("RST", RST),
    ("RST+ACK", RST | ACK),
    ("FIN+ACK", FIN | ACK),
    ("PSH+ACK", PSH | ACK),
    ("every flag", 0xff),
];

/// Flag sets sent between two knocks.
const BETWEEN_KNOCKS: [&str; 7] = [
    "SYN+ACK",
    "SYN+FIN",
    "a null segment",
    "a xmas segment",
    "ACK",
    "FIN",
    "RST",
];

const fn opens_connection(flags: u8) -> bool {
    flags & SYN != 0 && flags & ACK == 0
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, flags) in ODD_FLAGS {
        let to_knock = Case::v4(&format!("{name} to the first knock port"))
            .send(tcp4(K1, flags).build(), DROP);
        cases.push(if opens_connection(flags) {
            to_knock.first_knock_counted()
        } else {
            to_knock.knock_port_dropped(1)
        });
        let to_ssh = Case::v4(&format!("{name} to the protected port"));
        cases.push(if opens_connection(flags) {
            to_ssh.send(tcp4(SSH, flags).build(), DROP).gate_dropped(1)
        } else {
            to_ssh.send(tcp4(SSH, flags).build(), PASS)
        });
    }
    for (name, flags) in ODD_FLAGS
        .into_iter()
        .filter(|(name, _)| BETWEEN_KNOCKS.contains(name))
    {
        let to_next = Case::v4(&format!("{name} to the second knock port after the first"))
            .send(syn4(K1).build(), DROP)
            .send(tcp4(K2, flags).build(), DROP);
        cases.push(if opens_connection(flags) {
            to_next
                .stage(2)
                .knock_port_dropped(2)
                .counts(&[(KnockAccepted, 2)])
        } else {
            // Not a knock, and not a new connection: the attempt waits for the real one.
            to_next.first_knock_counted().knock_port_dropped(1)
        });
        let elsewhere = Case::v4(&format!("strict: {name} to another port after a knock"))
            .send(syn4(K1).build(), DROP)
            .send(tcp4(WEB, flags).build(), PASS);
        cases.push(if opens_connection(flags) {
            elsewhere
                .knock_port_dropped(1)
                .counts(&[(KnockAccepted, 1), (AttemptReset, 1)])
        } else {
            elsewhere.first_knock_counted()
        });
    }
    cases.extend([
        Case::v4("tcpflags = syn: SYN+ACK knocks open the door, as in knockd")
            .on(&GUIDE)
            .send_each(knocks(|port| tcp4(port, SYN | ACK)), DROP)
            .sequence_opens_the_door(),
        Case::v4("tcpflags = syn: a FIN is no knock")
            .on(&GUIDE)
            .send(tcp4(K1, FIN).build(), DROP)
            .knock_port_dropped(1),
        Case::v4("tcpflags = fin,!syn: FIN knocks open the door")
            .on(&FIN_DOOR)
            .send_each(knocks(|port| tcp4(port, FIN)), DROP)
            .send(syn4(SSH).build(), PASS)
            .sequence_opens_the_door()
            .counts(&[(GateAllowed, 1)]),
        Case::v4("tcpflags = fin,!syn: FIN+ACK knocks open the door")
            .on(&FIN_DOOR)
            .send_each(knocks(|port| tcp4(port, FIN | ACK)), DROP)
            .sequence_opens_the_door(),
        Case::v4("tcpflags = fin,!syn: a SYN+FIN is no knock")
            .on(&FIN_DOOR)
            .send(tcp4(K1, SYN | FIN).build(), DROP)
            .knock_port_dropped(1),
        Case::v4("tcpflags = fin,!syn: SYNs to every knock port open nothing")
            .on(&FIN_DOOR)
            .send_each(knocks(syn4), DROP)
            .knock_port_dropped(3),
    ]);
    cases
}
