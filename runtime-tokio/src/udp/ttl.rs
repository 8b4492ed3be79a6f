//! Reading the IP TTL (IPv6: hop limit) a datagram arrived with: `IP_RECVTTL` and
//! `IPV6_RECVHOPLIMIT` ask the kernel for it as a control message of `recvmsg`. quinn-udp's
//! receive path does not hand it out, so a socket that wants it (a rendezvous server, which
//! tells each daemon its hop count) receives one datagram per `recvmsg` here instead.
//!
//! With [`crate::local_conn::recv_into`]'s one `set_len`, the only unsafe code of the
//! runtimes: one `setsockopt` and one `recvmsg` with the libc control-message macros, each
//! with its reason.
#![allow(unsafe_code)]

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use socket2::SockRef;

/// Room for the TTL and hop-limit messages (and anything else the socket has enabled).
const CONTROL_LEN: usize = 128;
/// Linux's `UDP_GRO` control message: the segment size of a coalesced batch (quinn-udp turns
/// GRO on for the socket).
const UDP_GRO: libc::c_int = 104;

/// One received datagram, or GRO batch of them.
pub(super) struct Received {
    /// Bytes received.
    pub(super) len: usize,
    /// The sender.
    pub(super) from: SocketAddr,
    /// Its TTL, if the kernel said.
    pub(super) ttl: Option<u8>,
    /// For a GRO batch: the size of each datagram but the last.
    pub(super) stride: Option<usize>,
}

/// Asks the kernel to report the TTL / hop limit of every datagram `socket` receives.
pub(super) fn enable(socket: &impl AsFd) -> io::Result<()> {
    let sock = SockRef::from(socket);
    let v6 = matches!(sock.local_addr()?.as_socket(), Some(SocketAddr::V6(_)));
    if v6 {
        sock.set_recv_hoplimit_v6(true)?;
        // A dual-stack socket receives IPv4 too; best effort, as on a v6-only socket it fails.
        let _ = set_int(socket, libc::IPPROTO_IP, libc::IP_RECVTTL, 1);
        Ok(())
    } else {
        set_int(socket, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)
    }
}

fn set_int(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `fd` is an open socket borrowed for the call; the option value is a c_int that
    // lives across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receives one datagram (or GRO batch) into `buf`. `WouldBlock` when the socket is empty. A
/// datagram longer than `buf` is cut.
pub(super) fn recv(socket: &impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let fd = socket.as_fd().as_raw_fd();
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut control = [0u64; CONTROL_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_name = name.as_mut_ptr().cast();
    hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = CONTROL_LEN as _;
    // SAFETY: every pointer in `hdr` points into locals (`name`, `iov` and through it `buf`,
    // `control`) that outlive the call, with their true sizes.
    let n = unsafe { libc::recvmsg(fd, &raw mut hdr, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recvmsg filled in `msg_namelen` bytes of the (zeroed) storage.
    let from = unsafe { sockaddr(name.assume_init_ref()) }
        .ok_or_else(|| io::Error::other("datagram from an address that is not IP"))?;
    let mut ttl = None;
    let mut stride = None;
    // SAFETY: `hdr` describes `control` as filled by recvmsg (`msg_controllen` updated by the
    // kernel); the CMSG macros stay within it, and each message's data holds at least a c_int
    // for the two kinds read here.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let kind = (c.cmsg_level, c.cmsg_type);
            if kind == (libc::IPPROTO_IP, libc::IP_TTL)
                || kind == (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
            {
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                ttl = u8::try_from(value).ok();
            } else if kind == (libc::SOL_UDP, UDP_GRO) {
                // The kernel writes the segment size as a c_int (quinn-udp reads it so too).
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                stride = usize::try_from(value).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(&raw const hdr, cmsg);
        }
    }
    Ok(Received {
        len: n as usize,
        from,
        ttl,
        stride,
    })
}

/// The socket address in `storage`, if IPv4 or IPv6.
///
/// # Safety
/// `storage` holds a sockaddr written by the kernel (or zeros).
unsafe fn sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which fits in the storage.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6, which fits in the storage.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
