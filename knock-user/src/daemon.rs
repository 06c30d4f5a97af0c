//! `knock-user run`: load, attach, push the configuration, then turn kernel events into log
//! lines and commands until a signal says stop.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::clock;
use crate::config::{self, Config};
use crate::events;
use crate::journal::Journal;
use crate::keeper::Keeper;
use crate::loader::{AttachMode, Capacities, Knock};
use crate::plan::Plan;
use crate::sweep;
use crate::xdplog;

pub struct RunOptions {
    pub config: PathBuf,
    pub interfaces: Vec<String>,
    pub mode: AttachMode,
    pub verbose: bool,
    pub debug: bool,
}

/// How often stale progress and gate entries are cleared.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let config = Arc::new(config::load(&options.config)?);
    let journal = Arc::new(
        Journal::new(
            config.options.use_syslog,
            config.options.log_file.as_deref(),
            options.verbose,
        )
        .context("cannot open the log")?,
    );
    let interfaces = interfaces(&options, &config)?;
    let plan = Plan::new(&config, &BTreeSet::new());
    let capacities = Capacities {
        progress: config.options.progress_capacity,
        gate: config.options.gate_capacity,
    };
    let mut knock =
        Knock::load(capacities, options.debug).context("cannot load the XDP program")?;
    let _xdp_log = if options.debug {
        Some(xdplog::start(knock.ebpf_mut())?)
    } else {
        None
    };
    knock
        .push(&plan)
        .context("cannot write the configuration into the kernel")?;
    for iface in &interfaces {
        knock.attach(iface, options.mode)?;
    }
    journal.line(&format!(
        "starting up, listening on {}",
        interfaces.join(", ")
    ));
    journal.detail(&format!(
        "knock: {} door(s), {} XDP, program of {} instructions, progress for {} sources, gate for {} entries",
        config.doors.len(),
        options.mode.name(),
        knock.instruction_count().map_or_else(
            || "an unknown number of".to_owned(),
            |(loaded, verified)| format!("{loaded} (verifier walked {verified})")
        ),
        capacities.progress,
        capacities.gate,
    ));

    let mut ring =
        crate::watch::readable(knock.take_events()?).context("cannot watch the event ring")?;
    let mut keeper = Keeper::new(Arc::clone(&config), Arc::clone(&journal));
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut next_close: Option<u64> = None;
    loop {
        let close_in = next_close.map_or(Duration::from_secs(3600), clock::until);
        tokio::select! {
            readable = ring.readable_mut() => {
                let mut guard = readable.context("the event ring failed")?;
                let ring = &mut guard.get_inner_mut().0;
                while let Some(item) = ring.next() {
                    match events::decode(&item) {
                        Ok(event) => keeper.on_event(event),
                        Err(error) => journal.line(&format!("knock: ignored a bad event: {error}")),
                    }
                }
                guard.clear_ready();
                next_close = keeper.close_due();
            }
            _ = tokio::time::sleep(close_in) => {
                next_close = keeper.close_due();
            }
            _ = sweep.tick() => {
                let now = clock::monotonic_ns();
                let doors = &plan.doors;
                let timeouts = sweep::progress(&mut knock.progress()?, doors, now);
                for event in timeouts {
                    keeper.on_event(event);
                }
                sweep::gate(&mut knock.gate()?, now);
                keeper.reap();
                next_close = keeper.close_due();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    journal.line("shutting down");
    keeper.close_all();
    keeper.finish().await;
    // Dropping `knock` detaches the program and frees its maps.
    drop(knock);
    Ok(())
}

/// The interfaces to attach to: the command line wins, then the configuration, then the
/// interface of the default route.
fn interfaces(options: &RunOptions, config: &Config) -> anyhow::Result<Vec<String>> {
    if !options.interfaces.is_empty() {
        return Ok(options.interfaces.clone());
    }
    if !config.options.interfaces.is_empty() {
        return Ok(config.options.interfaces.clone());
    }
    match default_route_interface()? {
        Some(iface) => Ok(vec![iface]),
        None => {
            bail!("no interface given and no default route to pick one from; use --interface NAME")
        }
    }
}

/// The interface of the IPv4 default route, from /proc/net/route.
fn default_route_interface() -> anyhow::Result<Option<String>> {
    let table =
        std::fs::read_to_string("/proc/net/route").context("cannot read /proc/net/route")?;
    Ok(table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let iface = fields.next()?;
        let destination = fields.next()?;
        (destination == "00000000").then(|| iface.to_owned())
    }))
}
