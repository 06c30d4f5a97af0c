//! Pinned links, through bpf(2) directly: detaching one now, and asking which interface it is
//! attached to (none, once its interface went away).

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Opens the object pinned at `path`.
fn open_pinned(path: &Path) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: u32,
        _pad: u32,
    }
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let get = ObjGet {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: BPF_OBJ_GET reads the attribute struct we own, which points to a NUL-terminated
    // path that outlives the call, and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGet,
            size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The index of the interface the XDP link pinned at `path` is attached to: 0 once that
/// interface went away (the kernel keeps the link, attached to nothing).
pub fn attached_ifindex(path: &Path) -> std::io::Result<u32> {
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let link = open_pinned(path)?;
    // struct bpf_link_info: type, id, prog_id, then a union at offset 16 whose `xdp` member
    // starts with the interface index. Zeroed room for what newer kernels add.
    let mut info = [0u64; 32];
    let request = InfoByFd {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD reads the attribute struct we own and writes at most
    // `info_len` bytes into `info`, which we own and which outlives the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &request as *const InfoByFd,
            size_of::<InfoByFd>(),
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The low half of the third word, in the machine's byte order.
    let words: [u8; 8] = info[2].to_ne_bytes();
    Ok(u32::from_ne_bytes([words[0], words[1], words[2], words[3]]))
}

/// Detaches the link pinned at `path` now, and removes the pin. Removing the pin alone would
/// let the kernel release the link a moment later, from a work queue, and an attach in another
/// mode right after could still find the old program in place.
pub fn detach_pinned_link(path: &Path) -> std::io::Result<()> {
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
    }
    let link = open_pinned(path)?;
    let detach = LinkDetach {
        link_fd: link.as_raw_fd() as u32,
    };
    // SAFETY: BPF_LINK_DETACH reads the attribute struct we own.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &detach as *const LinkDetach,
            size_of::<LinkDetach>(),
        )
    };
    let detached = if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    std::fs::remove_file(path)?;
    detached
}
