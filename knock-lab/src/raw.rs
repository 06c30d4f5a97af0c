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
