//! The XDP program's debug log (aya-log), printed on stderr when the operator asks with
//! `--debug`.

use anyhow::Context as _;
use aya::Ebpf;
use aya_log::EbpfLogger;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        eprintln!("knock[xdp] {}: {}", record.level(), record.args());
    }

    fn flush(&self) {}
}

/// Starts printing the program's log records; they stop when the returned task is dropped.
pub fn start(ebpf: &mut Ebpf) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let logger =
        EbpfLogger::init_with_logger(ebpf, Stderr).context("cannot read the XDP program's log")?;
    let mut fd =
        crate::system::watch::readable(logger).context("cannot watch the XDP program's log")?;
    Ok(tokio::spawn(async move {
        while let Ok(mut guard) = fd.readable_mut().await {
            guard.get_inner_mut().0.flush();
            guard.clear_ready();
        }
    }))
}
