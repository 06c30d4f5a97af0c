//! Plays one scenario against one implementation in a fresh lab and reports what happened.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use knock_common::craft::Craft;
use knock_lab::knockd::Knockd;
use knock_lab::{Lab, Netns, Scene, connects};

use super::table::{self, Action, Outcome, Proto, Scenario};

const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");

/// How long start commands get to finish after the last action.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a connection may take before the port counts as shut; a dropped SYN never answers.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);
const DESTINATION_OPTIONS: u8 = 60;
/// How long a daemon gets to re-read its configuration after SIGHUP.
const RELOAD_SETTLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implementation {
    Knockd,
    KnockInKnockdMode,
    KnockStrict,
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Knockd => "real knockd",
            Self::KnockInKnockdMode => "knock, Progress = knockd",
            Self::KnockStrict => "knock, Progress = strict",
        })
    }
}

/// What one implementation did in one scenario.
pub struct Run {
    pub outcome: Outcome,
    pub log: Vec<String>,
}

enum Running {
    Knockd(Knockd),
    Knock,
}

fn fail(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Plays `scenario` against `which`; an error means the run itself broke (the lab, a daemon
/// that did not start, a client that failed), not that the outcome was wrong.
pub fn run(scenario: &Scenario, which: Implementation) -> Result<Run, String> {
    let mut build = Scene::build("").listen_only(&scenario.listen).stopped();
    for (name, content) in &scenario.files {
        build = build.file(name, content);
    }
    let mut scene = build.start(Path::new(BINARY)).map_err(fail("the scene"))?;
    write_config(&scene.config, &scene.dir.0, which, &scenario.config)?;
    let args: Vec<&str> = scenario.daemon_args.iter().map(String::as_str).collect();
    let daemon = match which {
        Implementation::Knockd => Running::Knockd(
            Knockd::start(
                &scene.lab.server,
                &scene.lab.server_if,
                &scene.config,
                &args,
            )
            .map_err(fail("knockd"))?,
        ),
        Implementation::KnockInKnockdMode | Implementation::KnockStrict => {
            scene.start_daemon(&args).map_err(fail("knock-user run"))?;
            Running::Knock
        }
    };
    let stage = Stage {
        lab: &scene.lab,
        scenario,
        which,
        dir: &scene.dir.0,
        config_path: &scene.config,
    };

    let mut outcome = BTreeSet::new();
    let played = scenario
        .play
        .iter()
        .try_for_each(|action| stage.play(action, &mut outcome));
    std::thread::sleep(SETTLE);
    // Records are read before the daemon stops: knock runs the stop commands of open doors when
    // it stops, and knockd's forked children are ended with it.
    let records = read_records(&scene.dir.0, &scenario.files);
    let log = match daemon {
        Running::Knockd(knockd) => knockd.stop(),
        Running::Knock => scene.stop_daemon().0,
    };
    played.map_err(|e| format!("{e}\n{}", log.join("\n")))?;
    outcome.extend(records.map_err(fail("the records"))?);
    Ok(Run {
        outcome: Outcome(outcome),
        log,
    })
}

/// Writes the scenario's configuration (`$DIR` stands for the run's directory) as `which` reads
/// it.
fn write_config(path: &Path, dir: &Path, which: Implementation, text: &str) -> Result<(), String> {
    let text = text.replace("$DIR", &dir.to_string_lossy());
    std::fs::write(path, configuration(&text, dir, which)).map_err(fail("the configuration"))
}

/// The scenario's configuration with a recording start command in every door that has none,
/// and for knock the progress rule.
fn configuration(config: &str, dir: &Path, which: Implementation) -> String {
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in config.lines() {
        if line.trim_start().starts_with('[') {
            sections.push(Vec::new());
        }
        if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    let progress = match which {
        Implementation::Knockd => None,
        Implementation::KnockInKnockdMode => Some("    Progress = knockd"),
        Implementation::KnockStrict => Some("    Progress = strict"),
    };
    let mut out = String::new();
    let mut has_options = false;
    for section in &sections {
        let Some((header, body)) = section.split_first() else {
            continue;
        };
        if !header.trim_start().starts_with('[') {
            out.push_str(&(section.join("\n") + "\n"));
            continue;
        }
        let name = header.trim().trim_start_matches('[').trim_end_matches(']');
        let mut lines = vec![(*header).to_owned()];
        if name.eq_ignore_ascii_case("options") {
            has_options = true;
            lines.extend(progress.map(str::to_owned));
        } else if !name.is_empty() && !has_start_command(body) {
            let record = dir.join(format!("record-{name}"));
            lines.push(format!(
                "    Start_Command = echo %IP% >> {}",
                record.display()
            ));
        }
        lines.extend(body.iter().map(|l| (*l).to_owned()));
        out.push_str(&(lines.join("\n") + "\n"));
    }
    match progress {
        Some(line) if !has_options => format!("[options]\n{line}\n{out}"),
        _ => out,
    }
}

fn has_start_command(body: &[&str]) -> bool {
    body.iter().any(|line| {
        let key = line.split('=').next().unwrap_or("").trim();
        key.eq_ignore_ascii_case("start_command") || key.eq_ignore_ascii_case("command")
    })
}

/// What the actions of one run act on.
struct Stage<'a> {
    lab: &'a Lab,
    scenario: &'a Scenario,
    which: Implementation,
    dir: &'a Path,
    config_path: &'a Path,
}

impl Stage<'_> {
    fn write_config(&self, text: &str) -> Result<(), String> {
        write_config(self.config_path, self.dir, self.which, text)
    }

    fn play(&self, action: &Action, outcome: &mut BTreeSet<String>) -> Result<(), String> {
        let lab = self.lab;
        match action {
            Action::Knock { to, ports } => {
                let family = if to.is_ipv6() { "-6" } else { "-4" };
                let output = lab
                    .client
                    .command("knock")
                    .arg(family)
                    .arg(to.to_string())
                    .args(ports)
                    .output()
                    .map_err(|e| format!("knock(1) did not run: {e}"))?;
                if !output.status.success() {
                    return Err(format!("knock(1) failed: {output:?}"));
                }
            }
            Action::Send {
                proto,
                port,
                flags,
                from,
                to,
                times,
                options,
                fragment,
            } => {
                let mut craft = match proto {
                    Proto::Tcp => Craft::tcp(*from, *to, *port, *flags),
                    Proto::Udp => Craft::udp(*from, *to, *port),
                };
                if *options {
                    // Destination options holding one PadN option: nothing a host would act on.
                    craft = craft.with_extension(DESTINATION_OPTIONS, &[1, 4, 0, 0, 0, 0]);
                }
                if *fragment {
                    craft = craft.with_fragment(0, true);
                }
                let frame = craft.build();
                for _ in 0..*times {
                    lab.send_from_client(&frame)
                        .map_err(|e| format!("a crafted frame was not sent: {e}"))?;
                }
            }
            Action::Connect { port, to } => {
                let state = match connects(&lab.client, *to, *port, CONNECT_TIMEOUT) {
                    Ok(_) => "open",
                    Err(_) => "shut",
                };
                outcome.insert(format!("{port}:{state}"));
            }
            Action::Wait(duration) => std::thread::sleep(*duration),
            Action::Reload => {
                let scenario = self.scenario;
                self.write_config(scenario.reload_config.as_ref().unwrap_or(&scenario.config))?;
                let daemon = match self.which {
                    Implementation::Knockd => "knockd",
                    Implementation::KnockInKnockdMode | Implementation::KnockStrict => "knock-user",
                };
                signal(&lab.server, daemon, libc::SIGHUP)?;
                std::thread::sleep(RELOAD_SETTLE);
            }
        }
        Ok(())
    }
}

/// Sends `signal` to the processes called `name` in `ns`. The lab's daemon handles do not give
/// out their process ids, so they are looked up among the namespace's processes.
fn signal(ns: &Netns, name: &str, signal: i32) -> Result<(), String> {
    let output = Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .map_err(|e| format!("ip netns pids: {e}"))?;
    let pids: Vec<i32> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect();
    if pids.is_empty() {
        return Err(format!("no {name} process in {}", ns.name()));
    }
    for pid in pids {
        // SAFETY: kill(2) on the daemon this run started.
        unsafe { libc::kill(pid, signal) };
    }
    Ok(())
}

/// `door@source` (`*N` for N times) for the lines recording start commands wrote, and the final
/// content of the scenario's files (one-time sequences are rewritten as they are used).
fn read_records(dir: &Path, files: &[(String, String)]) -> std::io::Result<BTreeSet<String>> {
    let mut tokens = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(door) = name.strip_prefix("record-") else {
            continue;
        };
        let mut runs: BTreeMap<String, usize> = BTreeMap::new();
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let source = line
                .trim()
                .parse::<IpAddr>()
                .map_or_else(|_| line.trim().to_owned(), table::name_of);
            *runs.entry(source).or_default() += 1;
        }
        for (source, count) in runs {
            tokens.insert(match count {
                1 => format!("{door}@{source}"),
                n => format!("{door}@{source}*{n}"),
            });
        }
    }
    for (name, _) in files {
        let content = std::fs::read_to_string(dir.join(name))?;
        let lines: Vec<&str> = content.lines().collect();
        tokens.insert(format!("{name}={}", lines.join("/")));
    }
    Ok(tokens)
}
