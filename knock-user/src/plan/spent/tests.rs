use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use knock_common::ProtoPort;
use knock_common::spent::{ROTATING, is_rotating};

use super::*;
use crate::config::Config;
use crate::config::rotate::Secret;

fn tcp(ports: &[u16]) -> Vec<ProtoPort> {
    ports.iter().map(|&p| ProtoPort::tcp(p)).collect()
}

fn one_time_door(name: &str, ports: &[u16]) -> DoorConfig {
    let mut door = DoorConfig::new(name, 1);
    door.one_time_sequences = Some(PathBuf::from("/etc/knockd/once"));
    door.sequence = tcp(ports);
    door
}

fn rotating_config() -> Config {
    let mut config = crate::config::parse(
        Path::new("t"),
        "[openSSH]\nsequence = 1\n[static]\nsequence = 2\n",
    )
    .unwrap();
    config.doors[0].sequence.clear();
    config.doors[0].secret = Some(Secret::new("openSSH", [7; 32], BTreeSet::new()));
    config
}

fn instance(config: &Config, period: u64) -> DoorConfig {
    DoorConfig {
        period: Some(period),
        ..config.doors[0].clone()
    }
}

#[test]
fn a_door_whose_sequence_works_again_and_again_has_no_tag() {
    let mut door = DoorConfig::new("static", 1);
    door.sequence = tcp(&[1000, 2000]);
    assert_eq!(tag(&door), None);
}

#[test]
fn a_one_time_tag_names_the_door_and_the_ports_not_the_line() {
    let first = tag(&one_time_door("openSSH", &[1000, 2000])).unwrap();
    assert!(!is_rotating(first));
    let mut moved = one_time_door("openSSH", &[1000, 2000]);
    moved.one_time_line = Some(7);
    assert_eq!(
        tag(&moved),
        Some(first),
        "the same line further down the file"
    );
    assert_ne!(tag(&one_time_door("openSSH", &[1000, 2001])), Some(first));
    assert_ne!(tag(&one_time_door("openVPN", &[1000, 2000])), Some(first));
    let mut udp = one_time_door("openSSH", &[1000]);
    udp.sequence.push(ProtoPort::udp(2000));
    assert_ne!(tag(&udp), Some(first), "the protocol counts");
}

#[test]
fn a_rotating_tag_names_the_door_its_secret_and_the_period() {
    let config = rotating_config();
    let period_100 = tag(&instance(&config, 100)).unwrap();
    assert!(is_rotating(period_100));
    assert_eq!(tag(&instance(&config, 100)), Some(period_100));
    assert_ne!(tag(&instance(&config, 101)), Some(period_100));
    let mut rekeyed = config.clone();
    rekeyed.doors[0].secret = Some(Secret::new("openSSH", [8; 32], BTreeSet::new()));
    assert_ne!(tag(&instance(&rekeyed, 100)), Some(period_100));
    assert_eq!(
        tag(&config.doors[0]),
        None,
        "the door's own entry takes SPA and is not single-use"
    );
}

const FILE: &str =
    "# sequences for openSSH\n#000,2000\n\n3000,4000\n5000:udp,6000\n3000,4000\n7000\n";

fn spent_lines(ports: &[&[u16]]) -> BTreeSet<Tag> {
    ports
        .iter()
        .map(|p| one_time_tag("openSSH", &tcp(p)))
        .collect()
}

#[test]
fn the_next_line_is_the_first_neither_marked_nor_spent() {
    let path = Path::new("/etc/knockd/once");
    let next = next_line(path, FILE, "openSSH", &BTreeSet::new())
        .unwrap()
        .unwrap();
    assert_eq!((next.line, next.sequence), (4, tcp(&[3000, 4000])));

    let spent = spent_lines(&[&[3000, 4000]]);
    let next = next_line(path, FILE, "openSSH", &spent).unwrap().unwrap();
    assert_eq!(
        next.line, 5,
        "a line the kernel claimed is used, marked or not"
    );
    assert_eq!(next.sequence, [ProtoPort::udp(5000), ProtoPort::tcp(6000)]);
}

#[test]
fn a_line_repeating_a_used_sequence_is_used_too() {
    let mut spent = spent_lines(&[&[3000, 4000]]);
    spent.insert(one_time_tag(
        "openSSH",
        &[ProtoPort::udp(5000), ProtoPort::tcp(6000)],
    ));
    let next = next_line(Path::new("f"), FILE, "openSSH", &spent)
        .unwrap()
        .unwrap();
    assert_eq!(next.line, 7, "line 6 repeats line 4's sequence");
}

#[test]
fn another_doors_claims_do_not_use_up_this_doors_lines() {
    let spent: BTreeSet<Tag> = [one_time_tag("openVPN", &tcp(&[3000, 4000]))].into();
    let next = next_line(Path::new("f"), FILE, "openSSH", &spent)
        .unwrap()
        .unwrap();
    assert_eq!(next.line, 4);
}

#[test]
fn no_line_is_next_when_every_one_is_used() {
    let spent = spent_lines(&[&[3000, 4000], &[7000]]);
    let mut spent = spent;
    spent.insert(one_time_tag(
        "openSSH",
        &[ProtoPort::udp(5000), ProtoPort::tcp(6000)],
    ));
    assert_eq!(
        next_line(Path::new("f"), FILE, "openSSH", &spent).unwrap(),
        None
    );
}

#[test]
fn a_bad_line_names_the_file_and_the_line_even_past_a_spent_one() {
    let error = next_line(
        Path::new("/etc/knockd/once"),
        "1000,2000\n1000,abc\n",
        "openSSH",
        &spent_lines(&[&[1000, 2000]]),
    )
    .unwrap_err();
    assert_eq!(error.line, 2);
    assert!(error.to_string().contains("/etc/knockd/once"), "{error}");
}

#[test]
fn claimed_lines_that_are_not_marked_are_owed_a_mark() {
    let spent = spent_lines(&[&[3000, 4000], &[1000, 2000]]);
    assert_eq!(
        unmarked_spent(FILE, "openSSH", &spent),
        [4, 6],
        "line 2 (#000,2000) is marked already; lines 4 and 6 hold the claimed 3000,4000"
    );
    assert!(unmarked_spent(FILE, "openVPN", &spent).is_empty());
}

#[test]
fn claimed_periods_around_now_are_used() {
    let config = rotating_config();
    let secret = config.doors[0].secret.clone().unwrap();
    let now_s = 3000 * secret.period_s;
    let current = secret.period_at(now_s);
    let spent: BTreeSet<Tag> = [current - 1, current + 1, current + 5]
        .iter()
        .map(|&p| tag(&instance(&config, p)).unwrap())
        .collect();
    let used = used_periods(&config, now_s, &spent);
    let expected: BTreeSet<(String, u64)> = [
        ("openSSH".to_owned(), current - 1),
        ("openSSH".to_owned(), current + 1),
    ]
    .into();
    assert_eq!(used, expected, "periods outside the window do not matter");
}

#[test]
fn only_rotating_tags_claimed_long_ago_are_stale() {
    let day = 24 * 3600 * 1_000_000_000u64;
    let spent: BTreeMap<Tag, u64> = [(ROTATING | 1, 0), (ROTATING | 2, 5 * day), (3, 0)].into();
    assert_eq!(stale(&spent, 5 * day + 10, day), [ROTATING | 1]);
}

#[test]
fn rotating_tags_are_kept_at_least_a_day_and_four_periods() {
    let mut config = rotating_config();
    assert_eq!(keep_rotating_ns(&config), 24 * 3600 * 1_000_000_000);
    if let Some(secret) = config.doors[0].secret.as_mut() {
        secret.period_s = 12 * 3600;
    }
    assert_eq!(keep_rotating_ns(&config), 48 * 3600 * 1_000_000_000);
}
