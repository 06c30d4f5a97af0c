//! knock's XDP program and the empty baseline program, loaded from the same object into this
//! process, fed crafted frames through BPF_PROG_TEST_RUN: the kernel tests' rig
//! (`knock_user::kernel::rig`) with the benchmark's configuration and key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use aya::programs::Xdp;
use knock_common::counter::Counter;
use knock_common::progress::Progress;
use knock_common::{Addr, BASELINE_PROGRAM, PROGRAM};
use knock_user::kernel::{Capacities, Knock, rig};

pub use rig::{DROP, PASS};

/// The SPA client key the benchmark configurations trust: id 7.
pub const KEY_ID: u32 = 7;
pub const KEY: [u8; 16] = *b"knock-bench-key!";

/// The host the frames are addressed to, as in the lab.
pub fn server(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
    }
}

/// Source number `n` of a family: 198.51.100.n or 2001:db8::n.
pub fn host(v6: bool, n: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
    }
}

/// A source outside the lab's /24 and /64, one per `n`: for fresh sources by the thousand.
pub fn distinct(v6: bool, n: u32) -> IpAddr {
    if v6 {
        let [a, b, c, d] = n.to_be_bytes();
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xbe,
            0,
            0,
            0,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
        ))
    } else {
        // 203.0.113.0/24 holds only 256; the benchmark never needs more IPv4 sources at once
        // than the samples it deletes behind itself, so wrapping is harmless.
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, (n % 256) as u8))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    Baseline,
    Knock,
}

/// The loaded programs, their maps, and the configuration directory.
pub struct Rig {
    knock: Knock,
    events: RingBuf<MapData>,
    dir: PathBuf,
}

impl Rig {
    /// Loads both programs with `config` (knockd.conf text; `$DIR` is the key file's directory)
    /// and a progress map of `progress` entries.
    pub fn load(config: &str, progress: u32) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("knock-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let keys = dir.join("spa.keys");
        std::fs::write(
            &keys,
            format!("{KEY_ID} {} bench\n", knock_user::config::keys::hex(&KEY)),
        )?;
        let path = dir.join("knockd.conf");
        std::fs::write(&path, config.replace("$DIR", &dir.to_string_lossy()))?;
        let parsed = knock_user::config::load(&path)
            .map_err(|e| anyhow::anyhow!("the benchmark's configuration: {e}"))?;
        let mut knock = rig::load(
            &parsed,
            Capacities {
                progress,
                gate: 4096,
                reserve: 1024,
            },
            |_| {},
        )
        .context("loading knock's XDP program and writing its plan (run as root)")?;
        let baseline: &mut Xdp = knock
            .ebpf_mut()
            .program_mut(BASELINE_PROGRAM)
            .context("the object has no baseline program")?
            .try_into()?;
        baseline.load().context("loading the baseline program")?;
        let events = knock.take_events()?;
        Ok(Self { knock, events, dir })
    }

    /// Runs one program `repeat` times on `frame`: its verdict and the kernel's mean ns per run.
    pub fn run(&mut self, which: Prog, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        let name = match which {
            Prog::Baseline => BASELINE_PROGRAM,
            Prog::Knock => PROGRAM,
        };
        let (verdict, duration) =
            rig::test_run(&self.knock, name, frame, repeat).context("BPF_PROG_TEST_RUN")?;
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Ok((verdict, ns))
    }

    /// Runs knock on `frame` once, for its effect on the maps.
    pub fn feed(&mut self, frame: &[u8]) -> Result<u32> {
        Ok(self.run(Prog::Knock, frame, 1)?.0)
    }

    /// Empties the event ring buffer, as the daemon would, so emitting never finds it full.
    pub fn drain(&mut self) {
        while self.events.next().is_some() {}
    }

    pub fn counter(&self, which: Counter) -> Result<u64> {
        Ok(rig::counter(&self.knock, which))
    }

    /// Forgets a source: its progress, open doors and strikes.
    pub fn forget(&mut self, source: IpAddr) {
        let addr = Addr::from(source);
        if let Ok(mut progress) = self.knock.progress() {
            let _ = progress.remove(&addr);
        }
        // Both maps of the gate: an SPA opening sits in the reserve.
        let _ = self.knock.each_gate(|gate| {
            let _ = gate.remove(&addr);
        });
        if let Ok(mut bans) = self.knock.bans() {
            // Bans key IPv6 sources by their prefix.
            let _ = bans.remove(&knock_common::ban::key(
                addr,
                knock_common::ban::DEFAULT_PREFIX6,
            ));
        }
    }

    /// Puts `count` sources with one attempt in progress into the progress map, as a flood of
    /// first knocks would leave it.
    pub fn fill_progress(&mut self, count: u32, now_ns: u64) -> Result<()> {
        let mut value = Progress::default();
        value.attempts[0].started_ns = now_ns;
        value.attempts[0].stage = 1;
        let mut map = self.knock.progress()?;
        for n in 0..count {
            let source = Addr::from(distinct(true, 0x0100_0000 | n));
            map.insert(source, value, 0)
                .context("filling the progress map")?;
        }
        Ok(())
    }

    pub fn sources_in_progress(&mut self) -> Result<usize> {
        Ok(self.knock.progress()?.keys().count())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
