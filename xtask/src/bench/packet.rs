//! Part 1: what one packet costs knock, class by class, over the empty XDP program.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Result, ensure};
use knock_common::counter::Counter;
use knock_common::craft::{Craft, Transport};
use knock_common::segment::tcp_flags::{ACK, SYN};
use knock_common::spa::{self, Request};
use knock_common::{Addr, spa::DEFAULT_PORT};

use super::measure::{Around, Check, STATE, Sizes, Timing, repeated, single};
use super::report::{Goal, Table, median};
use super::rig::{DROP, KEY, KEY_ID, PASS, Prog, Rig, host, server};

/// The door every per-packet class is measured against: three TCP knocks, SPA, SSH protected.
/// In the filtered look: in the default (closed) look the gate answers a refused SYN with a
/// reset built in place (XDP_TX), so a repeated run would time the reset, not the SYN.
pub fn config(progress: &str) -> String {
    format!(
        "[options]\n    SPA_Keys = $DIR/spa.keys\n    Progress = {progress}\n    Ports_Look = filtered\n\
         [openSSH]\n    sequence = 7000,8000,9000\n    seq_timeout = 25\n    \
         cmd_timeout = 3600\n    SPA = yes\n"
    )
}

pub const KNOCKS: [u16; 3] = [7000, 8000, 9000];

/// Sources: 2 has the door open, 3 never knocked, 5 is the knocker of the stateful classes.
const OPENED: u8 = 2;
const STRANGER: u8 = 3;
const KNOCKER: u8 = 5;
/// Leaves an unread event in the ring buffer for the "daemon busy" runs.
const PRIMER: u8 = 6;
/// Has the door open through SPA, so no knock of its is recent.
const SPA_OPENED: u8 = 8;

pub fn syn(src: IpAddr, dport: u16) -> Vec<u8> {
    Craft::tcp(src, server(src.is_ipv6()), dport, SYN).build()
}

fn tcp(src: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    Craft::tcp(src, server(src.is_ipv6()), dport, flags).build()
}

fn udp(src: IpAddr, dport: u16, payload: Vec<u8>) -> Vec<u8> {
    let mut craft = Craft::udp(src, server(src.is_ipv6()), dport);
    craft.transport = Transport::Udp {
        sport: 40001,
        dport,
        payload,
    };
    craft.build()
}

/// An SPA datagram from `src` with nonce `n`, stamped now; `forged` spoils its MAC.
pub fn spa_frame(src: IpAddr, n: u64, forged: bool) -> Vec<u8> {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce[8] = u8::from(src.is_ipv6());
    let request = Request {
        key_id: KEY_ID,
        door_tag: knock_common::spa::door_tag("openSSH"),
        timestamp: knock_user::system::clock::unix_s(),
        nonce,
    };
    let mut packet = spa::seal(&request, &KEY, &Addr::from(src));
    if forged {
        packet[spa::PACKET_LEN - 1] ^= 1;
    }
    udp(src, DEFAULT_PORT, packet.to_vec())
}

/// One row of the per-packet table.
pub struct Row {
    pub class: &'static str,
    /// For classes that emit an event: whether the daemon was idle or busy reading them.
    pub mode: &'static str,
    pub v6: bool,
    pub timing: Timing,
    pub goal: Option<Goal>,
}

const fn pass() -> Check {
    Check {
        verdict: PASS,
        counter: None,
        still: STATE,
    }
}

fn counted(verdict: u32, counter: Counter) -> Check {
    Check {
        verdict,
        counter: Some(counter),
        still: &[],
    }
}

/// Every class in both families, and a malformed frame.
pub fn measure(sizes: Sizes) -> Result<Vec<Row>> {
    let mut rig = Rig::load(&config("strict"), 16384)?;
    let mut rows = Vec::new();
    for v6 in [false, true] {
        let opened = host(v6, OPENED);
        for port in KNOCKS {
            rig.feed(&syn(opened, port))?;
        }
        let spa_opened = host(v6, SPA_OPENED);
        rig.feed(&spa_frame(spa_opened, (1 << 44) + u64::from(v6), false))?;
        rig.drain();
        let stranger = host(v6, STRANGER);
        let knocker = host(v6, KNOCKER);
        let mut add = |class, mode: &'static str, timing, goal| {
            rows.push(Row {
                class,
                mode,
                v6,
                timing,
                goal,
            })
        };
        let fast = Some(Goal::FastPath);
        add(
            "TCP ACK, established flow to an unprotected port",
            "",
            repeated(&mut rig, &tcp(opened, 443, ACK), sizes, pass())?,
            fast,
        );
        add(
            "TCP ACK, established SSH flow (protected port)",
            "",
            repeated(&mut rig, &tcp(opened, 22, ACK), sizes, pass())?,
            fast,
        );
        add(
            "UDP to an unrelated port",
            "",
            repeated(&mut rig, &udp(stranger, 5353, vec![0; 32]), sizes, pass())?,
            fast,
        );
        add(
            "SYN to an unrelated port",
            "",
            repeated(&mut rig, &syn(stranger, 443), sizes, pass())?,
            fast,
        );
        add(
            "SYN to the protected port, dropped",
            "",
            repeated(
                &mut rig,
                &syn(stranger, 22),
                sizes,
                counted(DROP, Counter::GateDropped),
            )?,
            Some(Goal::Refused),
        );
        add(
            "SYN to the protected port, allowed",
            "",
            repeated(
                &mut rig,
                &syn(opened, 22),
                sizes,
                counted(PASS, Counter::GateAllowed),
            )?,
            Some(Goal::Admitted),
        );
        add(
            "SYN to the protected port, allowed, no knock lately (door opened by SPA)",
            "",
            repeated(
                &mut rig,
                &syn(spa_opened, 22),
                sizes,
                counted(PASS, Counter::GateAllowed),
            )?,
            Some(Goal::Admitted),
        );
        // The stateful classes, each timed with the daemon idle (the event wakes it) and busy
        // (an unread event is already waiting, so this one wakes nobody).
        let primer = syn(host(v6, PRIMER), KNOCKS[0]);
        let warmer = syn(stranger, 443);
        let base = if v6 { 1 << 40 } else { 0 };
        for (mode, busy) in [("daemon idle", false), ("daemon busy", true)] {
            let primer = busy.then_some(primer.as_slice());
            let forget = |rig: &mut Rig, _| {
                rig.forget(knocker);
                rig.forget(host(v6, PRIMER));
                Ok(())
            };
            let nonce = base + if busy { 1 << 42 } else { 0 };
            let classes: [(&'static str, Check, Goal); 5] = [
                (
                    "first knock (starts an attempt)",
                    counted(DROP, Counter::KnockAccepted),
                    Goal::Knock,
                ),
                (
                    "knock step (second of three)",
                    counted(DROP, Counter::KnockAccepted),
                    Goal::Knock,
                ),
                (
                    "final knock, opens the door",
                    counted(DROP, Counter::DoorOpened),
                    Goal::Knock,
                ),
                (
                    "SPA packet verified, opens the door",
                    counted(DROP, Counter::SpaAccepted),
                    Goal::Spa,
                ),
                (
                    "SPA packet forged (bad MAC)",
                    counted(DROP, Counter::SpaBadMac),
                    Goal::Spa,
                ),
            ];
            for (index, (class, check, goal)) in classes.into_iter().enumerate() {
                let timing = single(
                    &mut rig,
                    sizes,
                    check,
                    Around {
                        primer,
                        warmer: &warmer,
                    },
                    |rig, i| {
                        Ok(match index {
                            0 => syn(knocker, KNOCKS[0]),
                            1 | 2 => {
                                for port in &KNOCKS[..index] {
                                    rig.feed(&syn(knocker, *port))?;
                                }
                                syn(knocker, KNOCKS[index])
                            }
                            // Every sample carries a fresh nonce: no timed packet is a replay.
                            3 => spa_frame(knocker, nonce + i as u64, false),
                            _ => spa_frame(knocker, (1 << 41) + nonce + i as u64, true),
                        })
                    },
                    forget,
                )?;
                add(class, mode, timing, Some(goal));
            }
        }
    }
    // A header length of four words: malformed, dropped. And its IPv6 sibling, an IPv4-mapped
    // source address, which the host would drop too.
    let mut broken = syn(host(false, STRANGER), 22);
    broken[14] = 0x44;
    rows.push(Row {
        mode: "",
        class: "malformed frame (IPv4 header length 16)",
        v6: false,
        timing: repeated(&mut rig, &broken, sizes, counted(DROP, Counter::Malformed))?,
        goal: None,
    });
    let mapped = IpAddr::V6(Ipv6Addr::from(Addr::from(host(false, STRANGER)).octets()));
    rows.push(Row {
        mode: "",
        class: "malformed frame (IPv4-mapped source)",
        v6: true,
        timing: repeated(
            &mut rig,
            &Craft::tcp(mapped, server(true), 22, SYN).build(),
            sizes,
            counted(DROP, Counter::Malformed),
        )?,
        goal: None,
    });
    // The same stateless class timed both ways: how far the single-run method strays.
    let calibration = single(
        &mut rig,
        sizes,
        pass(),
        Around {
            primer: None,
            warmer: &syn(host(false, STRANGER), 443),
        },
        |_, _| Ok(syn(host(false, STRANGER), 443)),
        |_, _| Ok(()),
    )?;
    rows.push(Row {
        mode: "",
        class: "calibration: SYN to an unrelated port, single runs",
        v6: false,
        timing: calibration,
        goal: None,
    });
    drop(rig);
    for v6 in [false, true] {
        rows.push(Row {
            class: "knock step, warm (30 steps in a row)",
            mode: "daemon busy",
            v6,
            timing: warm_steps(sizes, v6)?,
            goal: Some(Goal::Knock),
        });
    }
    for v6 in [false, true] {
        for forged in [false, true] {
            rows.push(Row {
                class: if forged {
                    "SPA packet forged, warm (bans off)"
                } else {
                    "SPA packet replayed, warm (all verification; bans off)"
                },
                mode: "daemon busy",
                v6,
                timing: warm_spa(sizes, v6, forged)?,
                goal: Some(Goal::Spa),
            });
        }
    }
    // With no strict door, new connections to unrelated ports skip the progress lookup.
    let mut rig = Rig::load(&config("knockd"), 16384)?;
    for v6 in [false, true] {
        let stranger = host(v6, STRANGER);
        rows.push(Row {
            mode: "",
            class: "SYN to an unrelated port, Progress = knockd",
            v6,
            timing: repeated(&mut rig, &syn(stranger, 443), sizes, pass())?,
            goal: Some(Goal::FastPath),
        });
        rows.push(Row {
            mode: "",
            class: "UDP to an unrelated port, Progress = knockd",
            v6,
            timing: repeated(&mut rig, &udp(stranger, 5353, vec![0; 32]), sizes, pass())?,
            goal: Some(Goal::FastPath),
        });
    }
    Ok(rows)
}

/// The per-packet table.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(
        "Per-packet cost (BPF_PROG_TEST_RUN, medians, ns per packet)",
        &[
            "class",
            "IP",
            "reader",
            "method",
            "empty program",
            "knock",
            "overhead",
            "target",
            "met",
            "irq_work per run",
        ],
    );
    for row in rows {
        let t = &row.timing;
        let (target, met) = match row.goal {
            Some(goal) => (
                goal.describe(),
                if t.overhead() <= goal.limit_ns() {
                    "yes"
                } else {
                    "**no**"
                },
            ),
            None => ("", ""),
        };
        table.row(vec![
            row.class.to_owned(),
            if row.v6 { "v6" } else { "v4" }.to_owned(),
            row.mode.to_owned(),
            t.method.clone(),
            format!("{:.0}", t.baseline_ns),
            format!("{:.0}", t.knock_ns),
            format!("{:.0}", t.overhead()),
            target.to_owned(),
            met.to_owned(),
            t.irq_work.map_or_else(String::new, |w| format!("{w:.2}")),
        ]);
    }
    table
}

/// Knock steps timed back to back, warm: a door whose 32 knocks are all one port, so that
/// BPF_PROG_TEST_RUN repeating one frame advances the attempt each time. Each round feeds the
/// first knock and a primer (an unread event, so no run wakes the reader), then times knocks
/// 2 to 31: 30 real steps.
fn warm_steps(sizes: Sizes, v6: bool) -> Result<Timing> {
    const STEPS: u32 = 30;
    let ports = vec!["7777"; 32].join(",");
    let mut rig = Rig::load(
        &format!("[stepper]\n    sequence = {ports}\n    seq_timeout = 25\n"),
        16384,
    )?;
    let knocker = host(v6, KNOCKER);
    let frame = syn(knocker, 7777);
    let primer = syn(host(v6, PRIMER), 7777);
    let rounds = (sizes.samples / 4).max(10);
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    let before = rig.counter(Counter::KnockAccepted)?;
    for _ in 0..rounds {
        rig.drain();
        rig.feed(&frame)?;
        rig.feed(&primer)?;
        base.push(rig.run(Prog::Baseline, &frame, STEPS)?.1 as f64);
        ours.push(rig.run(Prog::Knock, &frame, STEPS)?.1 as f64);
        rig.forget(knocker);
        rig.forget(host(v6, PRIMER));
    }
    let moved = rig.counter(Counter::KnockAccepted)? - before;
    let expected = rounds as u64 * u64::from(STEPS + 2);
    ensure!(
        moved == expected,
        "the warm steps accepted {moved} knocks, expected {expected}"
    );
    Ok(Timing {
        baseline_ns: median(&mut base),
        knock_ns: median(&mut ours),
        method: format!("repeat {STEPS} x {rounds}"),
        irq_work: None,
    })
}

/// SPA verification timed back to back, warm. A replayed packet does all the verification work
/// of an accepted one (copy, key lookup, SipHash over 56 bytes, timestamp, the nonce insert that
/// finds it taken) but for opening the door; a forged one stops at the MAC. Bans are off so the
/// failures never turn into a ban, which would end verification early. Each round feeds the
/// packet once (accepted, or for a forged one refused), then a primer, then times
/// `SPA_ROUND` copies; the ring buffer holds their events without filling.
fn warm_spa(sizes: Sizes, v6: bool, forged: bool) -> Result<Timing> {
    const SPA_ROUND: u32 = 1000;
    let config = config("strict").replace("[options]\n", "[options]\n    Ban_Failures = 0\n");
    let mut rig = Rig::load(&config, 16384)?;
    let knocker = host(v6, KNOCKER);
    let primer = syn(host(v6, PRIMER), KNOCKS[0]);
    let counter = if forged {
        Counter::SpaBadMac
    } else {
        Counter::SpaReplayed
    };
    let rounds = (sizes.samples / 40).max(5);
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    let mut moved = 0;
    for round in 0..rounds {
        let frame = spa_frame(knocker, (1 << 43) + round as u64, forged);
        rig.drain();
        rig.feed(&frame)?;
        rig.feed(&primer)?;
        let before = rig.counter(counter)?;
        base.push(rig.run(Prog::Baseline, &frame, SPA_ROUND)?.1 as f64);
        ours.push(rig.run(Prog::Knock, &frame, SPA_ROUND)?.1 as f64);
        moved += rig.counter(counter)? - before;
        rig.forget(knocker);
        rig.forget(host(v6, PRIMER));
    }
    let expected = rounds as u64 * u64::from(SPA_ROUND);
    ensure!(
        moved == expected,
        "{} moved {moved} times, expected {expected}",
        counter.label()
    );
    Ok(Timing {
        baseline_ns: median(&mut base),
        knock_ns: median(&mut ours),
        method: format!("repeat {SPA_ROUND} x {rounds}"),
        irq_work: None,
    })
}
