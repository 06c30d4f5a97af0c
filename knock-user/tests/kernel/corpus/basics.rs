//! Plain IPv4 and IPv6 frames: knocks, the gate, and the progress rules.

use knock_common::counter::Counter::{
    AttemptReset, DoorOpened, GateAllowed, KnockAccepted, KnockPortDropped,
};
use knock_common::segment::tcp_flags::{ACK, SYN};

use super::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::v4("an IPv4 SYN to the first knock port is a knock")
            .send(syn4(K1).build(), DROP)
            .first_knock_counted(),
        Case::v6("an IPv6 SYN to the first knock port is a knock")
            .send(syn6(K1).build(), DROP)
            .first_knock_counted(),
        Case::v4("a SYN to the second knock port alone is dropped but starts nothing")
            .send(syn4(K2).build(), DROP)
            .knock_port_dropped(1),
        Case::v4("an IPv4 SYN to the protected port without a knock is dropped")
            .send(syn4(SSH).build(), DROP)
            .gate_dropped(1),
        Case::v6("an IPv6 SYN to the protected port without a knock is dropped")
            .send(syn6(SSH).build(), DROP)
            .gate_dropped(1),
        Case::v4("an IPv4 sequence opens the door and the next SYN to SSH passes")
            .send_each(knocks(syn4), DROP)
            .send(syn4(SSH).build(), PASS)
            .sequence_opens_the_door()
            .counts(&[(GateAllowed, 1)]),
        Case::v6("an IPv6 sequence opens the door and the next SYN to SSH passes")
            .send_each(knocks(syn6), DROP)
            .send(syn6(SSH).build(), PASS)
            .sequence_opens_the_door()
            .counts(&[(GateAllowed, 1)]),
        Case::v4("the door opens for the knocking source alone")
            .send_each(knocks(syn4), DROP)
            .send(Craft::tcp(OTHER4, SERVER4, SSH, SYN).build(), DROP)
            .sequence_opens_the_door()
            .gate_dropped(1),
        Case::v4("a neighbour's knocks do not advance the client")
            .send(syn4(K1).build(), DROP)
            .send(Craft::tcp(OTHER4, SERVER4, K2, SYN).build(), DROP)
            // Had the neighbour's knock counted for the client, this one would open the door.
            .send(syn4(K3).build(), DROP)
            .knock_port_dropped(3)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("knocks out of order reset the attempt")
            .send_each([syn4(K1).build(), syn4(K3).build()], DROP)
            .knock_port_dropped(2)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("a retransmitted knock neither advances nor resets")
            .send_each([syn4(K1).build(), syn4(K1).build()], DROP)
            .first_knock_counted()
            .knock_port_dropped(1),
        Case::v4("retransmissions between knocks still open the door")
            .send_each([K1, K1, K2, K2, K3].map(|port| syn4(port).build()), DROP)
            .sequence_opens_the_door()
            .knock_port_dropped(2),
        Case::v4("a SYN to an unrelated port passes and starts nothing")
            .send(syn4(WEB).build(), PASS),
        Case::v4("a UDP datagram to an unrelated port passes").send(udp4(53).build(), PASS),
        Case::v4("a UDP datagram to a TCP knock port number is no knock")
            .send(udp4(K1).build(), PASS),
        Case::v4("an ACK to the protected port passes: established sessions outlive doors")
            .send(tcp4(SSH, ACK).build(), PASS),
        Case::v4("strict: a SYN to another port between knocks resets the attempt")
            .send(syn4(K1).build(), DROP)
            .send(syn4(WEB).build(), PASS)
            .send(syn4(K2).build(), DROP)
            .knock_port_dropped(2)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("strict: a UDP datagram to another port between knocks resets the attempt")
            .send(syn4(K1).build(), DROP)
            .send(udp4(53).build(), PASS)
            .knock_port_dropped(1)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("strict: a SYN to the protected port between knocks resets the attempt")
            .send(syn4(K1).build(), DROP)
            .send(syn4(SSH).build(), DROP)
            .knock_port_dropped(1)
            .gate_dropped(1)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("strict: an ACK to another port between knocks leaves the attempt alone")
            .send(syn4(K1).build(), DROP)
            .send(tcp4(WEB, ACK).build(), PASS)
            .first_knock_counted(),
        Case::v4("knockd rule: a SYN to another port between knocks is ignored")
            .on(&KNOCKD)
            .send(syn4(K1).build(), DROP)
            .send(syn4(WEB).build(), PASS)
            .send_each([syn4(K2).build(), syn4(K3).build()], DROP)
            .sequence_opens_the_door(),
        Case::v4("knockd rule: a wrong knock still resets the attempt")
            .on(&KNOCKD)
            .send_each([syn4(K1).build(), syn4(K3).build()], DROP)
            .knock_port_dropped(2)
            .counts(&[(KnockAccepted, 1), (AttemptReset, 1)]),
        Case::v4("a knock on a served port is counted and passes")
            .on(&SERVED)
            .send(syn4(K1).build(), PASS)
            .stage(1)
            .counts(&[(KnockAccepted, 1)]),
        Case::v4("a sequence through a served port opens the door")
            .on(&SERVED)
            .send(syn4(K1).build(), PASS)
            .send_each([syn4(K2).build(), syn4(K3).build()], DROP)
            .door_opens()
            .counts(&[(KnockAccepted, 2), (KnockPortDropped, 2), (DoorOpened, 1)]),
        Case::v6("-4: an IPv6 knock is dropped and never counted")
            .on(&IPV4_ONLY)
            .send(syn6(K1).build(), DROP)
            .knock_port_dropped(1),
        Case::v6("-4: the gate still guards IPv6")
            .on(&IPV4_ONLY)
            .send(syn6(SSH).build(), DROP)
            .gate_dropped(1),
        Case::v4("-4: an IPv4 knock counts")
            .on(&IPV4_ONLY)
            .send(syn4(K1).build(), DROP)
            .first_knock_counted(),
    ]
}
