//! Waiting for a BPF ring buffer to become readable inside tokio.

use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A wrapper that hands tokio the ring buffer's descriptor.
pub struct Watched<T: AsFd>(pub T);

impl<T: AsFd> std::os::fd::AsRawFd for Watched<T> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers `inner` with the reactor for readability.
pub fn readable<T: AsFd>(inner: T) -> std::io::Result<AsyncFd<Watched<T>>> {
    // SAFETY: the descriptor belongs to `inner`, which the AsyncFd owns for its whole life, so it
    // stays open and the same for as long as tokio watches it.
    unsafe { AsyncFd::register_with_interest(Watched(inner), Interest::READABLE) }
        .map_err(Into::into)
}
