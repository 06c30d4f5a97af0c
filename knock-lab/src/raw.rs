//! Raw Ethernet frames out of an interface, through an AF_PACKET socket.

use std::ffi::CString;

/// Sends `frame` out of `iface` of the calling thread's namespace.
pub fn send(iface: &str, frame: &[u8]) -> std::io::Result<()> {
    let name = CString::new(iface).map_err(std::io::Error::other)?;
    // SAFETY: if_nametoindex reads a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is valid; the fields set below address the interface.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = index as i32;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0; 6]));
    // SAFETY: the buffer and address are valid for the stated lengths.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if sent < 0 { Err(error) } else { Ok(()) }
}

/// An AF_PACKET socket bound to one interface, seeing every frame it sends and receives.
pub struct Capture {
    fd: std::os::fd::OwnedFd,
}

impl Capture {
    /// Opens the capture in the calling thread's namespace.
    pub fn open(iface: &str) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd as _;
        let name = CString::new(iface).map_err(std::io::Error::other)?;
        // SAFETY: if_nametoindex reads a valid C string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(all),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below select the interface.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = all;
        address.sll_ifindex = index as i32;
        // SAFETY: a valid sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Lets the socket hold `bytes` of frames not yet read (SO_RCVBUFFORCE, past the
    /// namespace's rmem_max): a burst read after it ends loses nothing to the buffer.
    pub fn hold(&self, bytes: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
        // SAFETY: an int option, valid for the stated length during the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Every frame seen from now until `duration` has passed.
    pub fn frames_for(&self, duration: std::time::Duration) -> Vec<Vec<u8>> {
        use std::os::fd::AsRawFd as _;
        let deadline = std::time::Instant::now() + duration;
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        while std::time::Instant::now() < deadline {
            // SAFETY: reading into a buffer we own, of the stated length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                frames.push(buf[..n as usize].to_vec());
            } else {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        frames
    }
}

/// Sends many frames as fast as one socket can, rewriting each with `shape` before it leaves.
pub fn burst(
    iface: &str,
    template: &[u8],
    count: u64,
    mut shape: impl FnMut(u64, &mut [u8]),
) -> std::io::Result<u64> {
    let name = CString::new(iface).map_err(std::io::Error::other)?;
    // SAFETY: if_nametoindex reads a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is valid; the fields set below address the interface.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = index as i32;
    address.sll_halen = 6;
    let mut frame = template.to_vec();
    let mut sent = 0;
    for i in 0..count {
        shape(i, &mut frame);
        // SAFETY: the buffer and address are valid for the stated lengths.
        let rc = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc >= 0 {
            sent += 1;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(sent)
}
