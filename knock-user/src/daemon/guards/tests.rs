use super::*;

fn info(name: &str, index: u32) -> LinkInfo {
    LinkInfo {
        index,
        name: name.to_owned(),
        kind_of_link: 1,
        ..LinkInfo::default()
    }
}

fn guards() -> Vec<Guard> {
    vec![
        Guard::attached("eth0", 2, XdpMode::Native),
        Guard::missing("ppp0"),
    ]
}

#[test]
fn a_guarded_interface_that_goes_is_lost_by_its_index() {
    assert_eq!(
        on_change(&guards(), &Change::Gone(info("eth0", 2))),
        [Action::Lost {
            name: "eth0".to_owned(),
            index: 2
        }]
    );
    assert!(
        on_change(&guards(), &Change::Gone(info("eth0", 9))).is_empty(),
        "another interface that had the name before is none of its business"
    );
    assert!(on_change(&guards(), &Change::Gone(info("wlan0", 3))).is_empty());
}

#[test]
fn a_missing_interface_that_appears_is_attached() {
    assert_eq!(
        on_change(&guards(), &Change::Link(info("ppp0", 7))),
        [Action::Attach(info("ppp0", 7))]
    );
}

#[test]
fn an_interface_re_created_under_the_same_name_is_attached_even_if_its_loss_went_unheard() {
    assert_eq!(
        on_change(&guards(), &Change::Link(info("eth0", 12))),
        [
            Action::Lost {
                name: "eth0".to_owned(),
                index: 2
            },
            Action::Attach(info("eth0", 12))
        ]
    );
}

#[test]
fn news_of_an_attached_interface_that_keeps_its_name_change_nothing() {
    // Up, down, a new MTU, our own XDP program: RTM_NEWLINK all the same.
    assert!(on_change(&guards(), &Change::Link(info("eth0", 2))).is_empty());
    assert!(on_change(&guards(), &Change::Link(info("wlan0", 3))).is_empty());
}

#[test]
fn an_attached_interface_renamed_away_is_followed() {
    assert_eq!(
        on_change(&guards(), &Change::Link(info("lan0", 2))),
        [Action::Renamed {
            from: "eth0".to_owned(),
            to: "lan0".to_owned()
        }]
    );
}

#[test]
fn a_refused_interface_is_tried_again_only_when_a_new_one_takes_its_name() {
    let mut guards = guards();
    guards[1].state = State::Refused { index: 7 };
    assert!(on_change(&guards, &Change::Link(info("ppp0", 7))).is_empty());
    assert_eq!(
        on_change(&guards, &Change::Link(info("ppp0", 8))),
        [Action::Attach(info("ppp0", 8))]
    );
    assert_eq!(
        on_change(&guards, &Change::Gone(info("ppp0", 7))),
        [Action::Lost {
            name: "ppp0".to_owned(),
            index: 7
        }]
    );
}

#[test]
fn addresses_that_change_are_read_again() {
    assert_eq!(
        on_change(&guards(), &Change::Addresses),
        [Action::Addresses]
    );
}

#[test]
fn the_mode_line_says_which_and_why() {
    assert_eq!(
        mode_words(XdpMode::Native, None),
        "native XDP (in the driver)"
    );
    assert_eq!(
        mode_words(
            XdpMode::Generic,
            Some("Operation not supported (os error 95)")
        ),
        "generic XDP (skb), since the driver refused native XDP: Operation not supported (os \
         error 95)"
    );
}
