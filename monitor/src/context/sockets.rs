//! What socket a listen(2) made listen: its local address, from the kernel's socket tables in
//! /proc (the process's own network namespace), by the socket's inode.

use std::{
    io::{BufRead, BufReader, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// A listening socket found in /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    Tcp(IpAddr, u16),
    /// A Unix socket (its path, empty when unnamed; abstract names start with `@`).
    Unix(Vec<u8>),
}

/// Bytes of one /proc/PID/net table read at most: a host with very many sockets is cut short
/// (the answer is then "unknown") rather than read for ever.
const TABLE_MAX: u64 = 8 << 20;
/// Descriptors of one process looked at, at most (IORING_OP_LISTEN gives none).
const FDS_MAX: usize = 4096;

/// The inode of a `socket:[N]` link.
fn socket_inode(link: &[u8]) -> Option<u64> {
    std::str::from_utf8(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
        .ok()?
        .parse()
        .ok()
}

fn read_link(path: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::fs::read_link(path)
        .ok()
        .map(|p| p.into_os_string().into_vec())
}

/// The socket `fd` of `pid` names (or, with fd < 0, every socket `pid` holds): the first that
/// listens on TCP, else the Unix socket it is.
pub fn listening(pid: u32, fd: i32) -> Option<Listening> {
    let inodes: Vec<u64> = if fd >= 0 {
        vec![socket_inode(&read_link(&format!("/proc/{pid}/fd/{fd}"))?)?]
    } else {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .take(FDS_MAX)
            .filter_map(|e| socket_inode(&read_link(e.ok()?.path().to_str()?)?))
            .collect()
    };
    if inodes.is_empty() {
        return None;
    }
    for table in ["tcp", "tcp6"] {
        if let Some(found) = scan(&format!("/proc/{pid}/net/{table}"), |cols| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let ino: u64 = cols.get(9)?.parse().ok()?;
            if !inodes.contains(&ino) || *cols.get(3)? != "0A" {
                return None;
            }
            let (addr, port) = cols.get(1)?.split_once(':')?;
            Some(Listening::Tcp(
                hex_addr(addr)?,
                u16::from_str_radix(port, 16).ok()?,
            ))
        }) {
            return Some(found);
        }
    }
    if fd < 0 {
        return None;
    }
    scan(&format!("/proc/{pid}/net/unix"), |cols| {
        // Num RefCount Protocol Flags Type St Inode [Path]
        let ino: u64 = cols.get(6)?.parse().ok()?;
        (inodes.contains(&ino))
            .then(|| Listening::Unix(cols.get(7).map_or(Vec::new(), |p| p.as_bytes().to_vec())))
    })
}

/// The first line (after the header) of a /proc table for which `f` says something.
fn scan(path: &str, f: impl Fn(&[&str]) -> Option<Listening>) -> Option<Listening> {
    let file = std::fs::File::open(path).ok()?;
    let mut r = BufReader::new(file.take(TABLE_MAX));
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if std::mem::take(&mut first) {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(found) = f(&cols) {
            return Some(found);
        }
    }
}

/// An address as /proc/net/tcp{,6} prints it: each 32-bit word in the host's byte order.
fn hex_addr(s: &str) -> Option<IpAddr> {
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(s)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(s.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(b);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_read_in_the_hosts_byte_order() {
        if cfg!(target_endian = "little") {
            assert_eq!(hex_addr("0100007F"), Some("127.0.0.1".parse().unwrap()));
            assert_eq!(hex_addr("00000000"), Some("0.0.0.0".parse().unwrap()));
            assert_eq!(
                hex_addr("00000000000000000000000001000000"),
                Some("::1".parse().unwrap())
            );
            assert_eq!(
                hex_addr("0000000000000000FFFF00000100007F"),
                Some("127.0.0.1".parse().unwrap())
            );
        }
        assert_eq!(hex_addr("zz"), None);
        assert_eq!(hex_addr("0100007G"), None);
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
    }

    #[test]
    fn a_listening_socket_is_found_by_its_descriptor_and_among_all() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let pid = std::process::id();
        let want = Listening::Tcp("127.0.0.1".parse().unwrap(), port);
        assert_eq!(listening(pid, l.as_raw_fd()), Some(want.clone()));
        assert!(listening(pid, -1).is_some());
        // Not a socket.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(listening(pid, f.as_raw_fd()), None);
    }
}
