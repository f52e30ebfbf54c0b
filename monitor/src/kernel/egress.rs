//! Block mode's kernel side: the egress allowlist the cgroup connect and sendmsg hooks judge
//! every destination of the run against. A destination no prefix covers (with its port) is
//! refused there: connect(2), sendto(2), sendmsg(2), TCP Fast Open and io_uring connects fail
//! with EPERM before anything leaves. IPv4-mapped IPv6 destinations are judged as IPv4.
//!
//! The allowlist is written once, before the command starts, and the maps are then frozen:
//! not even root in the run can widen it through bpf(2).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
};
use ipnet::IpNet;
use monitor_common::{
    ALLOW_MAX, ALLOW_PORTS, AllowPorts, DnsProxy, FileId, GUARD_OWNERS, GUARDED_MAX, GuardOwners,
    Opened4, Opened6, RESOLVERS_MAX,
};

use super::loader::{LoadError, freeze};

/// The value aya writes (plain data: integers and an array of them).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Ports(AllowPorts);

// SAFETY: repr(C) integers only, no padding (u8, u8, [u16; 8]).
unsafe impl Pod for Ports {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Proxy(DnsProxy);
// SAFETY: repr(C) integers only, no padding (u32, [u8; 4], u16, u16).
unsafe impl Pod for Proxy {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Key4(Opened4);
// SAFETY: repr(C) integers only, no padding ([u8; 4], u16, u16).
unsafe impl Pod for Key4 {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Key6(Opened6);
// SAFETY: repr(C) integers only, no padding ([u8; 16], u16, u16).
unsafe impl Pod for Key6 {}

/// Block mode's DNS proxy as the kernel sees it: where the run's port-53 traffic to
/// `resolvers` goes instead.
pub struct ProxySetup {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub resolvers: Vec<IpAddr>,
    /// The proxy's upstreams: refused to the run on their ports (port 53 is redirected
    /// anyway), so it cannot ask them past the proxy.
    pub upstream: Vec<std::net::SocketAddr>,
}

/// Opens destinations for the rest of the run: the DNS proxy calls it with the addresses an
/// allowed answer gave, before the answer reaches the client. The maps are this run's.
pub struct Opener {
    v4: HashMap<MapData, Key4, u8>,
    v6: HashMap<MapData, Key6, u8>,
}

impl Opener {
    /// Let the run reach `addr` on `port` (`None`: any port). An IPv4-mapped address is
    /// opened as IPv4 (the hooks judge it so). Fails when the map is full.
    pub fn open(&mut self, addr: IpAddr, port: Option<u16>) -> Result<(), String> {
        let port = port.unwrap_or(0);
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            a => a,
        };
        match addr {
            IpAddr::V4(a) => self.v4.insert(
                &Key4(Opened4 {
                    addr: a.octets(),
                    port,
                    _pad: 0,
                }),
                &1,
                0,
            ),
            IpAddr::V6(a) => self.v6.insert(
                &Key6(Opened6 {
                    addr: a.octets(),
                    port,
                    _pad: 0,
                }),
                &1,
                0,
            ),
        }
        .map_err(|e| format!("opening {addr}: {e}"))
    }
}

/// One allowlist entry: a network and, optionally, the one port it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allow {
    pub net: IpNet,
    pub port: Option<u16>,
}

/// The prefixes and their ports, merged: a prefix allowed on any port once stays so; more
/// than [`ALLOW_PORTS`] ports for one prefix is an error (named).
fn merge(allow: &[Allow]) -> Result<BTreeMap<IpNet, Option<Vec<u16>>>, String> {
    let mut out: BTreeMap<IpNet, Option<Vec<u16>>> = BTreeMap::new();
    for a in allow {
        // An IPv4-mapped IPv6 network is the IPv4 one (the hook judges mapped addresses so).
        let net = match a.net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => {
                    IpNet::new(v4.into(), v6.prefix_len() - 96).map_err(|e| e.to_string())?
                }
                None => a.net,
            },
            n => n,
        }
        .trunc();
        let e = out.entry(net).or_insert_with(|| Some(Vec::new()));
        match (e.as_mut(), a.port) {
            (_, None) => *e = None,
            (None, Some(_)) => {}
            (Some(ports), Some(p)) => {
                if !ports.contains(&p) {
                    ports.push(p);
                }
                if ports.len() > ALLOW_PORTS {
                    return Err(format!(
                        "{net}: more than {ALLOW_PORTS} ports for one network; allow it on any port or split it"
                    ));
                }
            }
        }
    }
    if out.len() > ALLOW_MAX as usize {
        return Err(format!("more than {ALLOW_MAX} allowlist networks"));
    }
    Ok(out)
}

/// Turn block mode on with this allowlist and, with `proxy`, the DNS proxy's redirect; then
/// freeze every map but the opened destinations'. The prefixes written, and with `proxy` the
/// handle that opens destinations.
pub fn block(
    ebpf: &mut Ebpf,
    allow: &[Allow],
    proxy: Option<&ProxySetup>,
) -> Result<(usize, Option<Opener>), LoadError> {
    use std::os::fd::AsFd;

    use aya::maps::Map;
    let merged = merge(allow).map_err(LoadError::Egress)?;
    let take = |ebpf: &mut Ebpf, name: &'static str| {
        ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
    };
    let map_err = |name: &'static str| move |source| LoadError::Map { name, source };
    let (mut m4, mut m6, mut mm) = (
        take(ebpf, "ALLOW4")?,
        take(ebpf, "ALLOW6")?,
        take(ebpf, "EGRESS_MODE")?,
    );
    let (mut mp, mut r4, mut r6) = (
        take(ebpf, "DNS_PROXY")?,
        take(ebpf, "RESOLVERS4")?,
        take(ebpf, "RESOLVERS6")?,
    );
    let (mut d4, mut d6) = (take(ebpf, "DENY4")?, take(ebpf, "DENY6")?);
    let mut opener = None;
    if let Some(p) = proxy {
        if p.resolvers.len() > RESOLVERS_MAX as usize {
            return Err(LoadError::Egress(format!(
                "more than {RESOLVERS_MAX} resolvers"
            )));
        }
        let mut res4: HashMap<&mut MapData, [u8; 4], u8> =
            HashMap::try_from(&mut r4).map_err(map_err("RESOLVERS4"))?;
        let mut res6: HashMap<&mut MapData, [u8; 16], u8> =
            HashMap::try_from(&mut r6).map_err(map_err("RESOLVERS6"))?;
        for r in &p.resolvers {
            match r {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => res6
                    .insert(&v6.octets(), &1, 0)
                    .map_err(map_err("RESOLVERS6"))?,
                IpAddr::V6(v6) => res4
                    .insert(&v6.to_ipv4_mapped().expect("mapped").octets(), &1, 0)
                    .map_err(map_err("RESOLVERS4"))?,
                IpAddr::V4(v4) => res4
                    .insert(&v4.octets(), &1, 0)
                    .map_err(map_err("RESOLVERS4"))?,
            }
        }
        if p.upstream.len() > RESOLVERS_MAX as usize {
            return Err(LoadError::Egress(format!(
                "more than {RESOLVERS_MAX} upstream resolvers"
            )));
        }
        let mut deny4: HashMap<&mut MapData, Key4, u8> =
            HashMap::try_from(&mut d4).map_err(map_err("DENY4"))?;
        let mut deny6: HashMap<&mut MapData, Key6, u8> =
            HashMap::try_from(&mut d6).map_err(map_err("DENY6"))?;
        for up in &p.upstream {
            let ip = match up.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(up.ip(), IpAddr::V4),
                a => a,
            };
            match ip {
                IpAddr::V4(a) => deny4
                    .insert(
                        &Key4(Opened4 {
                            addr: a.octets(),
                            port: up.port(),
                            _pad: 0,
                        }),
                        &1,
                        0,
                    )
                    .map_err(map_err("DENY4"))?,
                IpAddr::V6(a) => deny6
                    .insert(
                        &Key6(Opened6 {
                            addr: a.octets(),
                            port: up.port(),
                            _pad: 0,
                        }),
                        &1,
                        0,
                    )
                    .map_err(map_err("DENY6"))?,
            }
        }
        let mut cfg: Array<&mut MapData, Proxy> =
            Array::try_from(&mut mp).map_err(map_err("DNS_PROXY"))?;
        cfg.set(
            0,
            &Proxy(DnsProxy {
                on: 1,
                addr4: p.addr.octets(),
                port: p.port,
                _pad: 0,
            }),
            0,
        )
        .map_err(map_err("DNS_PROXY"))?;
        let (o4, o6) = (take(ebpf, "OPENED4")?, take(ebpf, "OPENED6")?);
        opener = Some(Opener {
            v4: HashMap::try_from(o4).map_err(map_err("OPENED4"))?,
            v6: HashMap::try_from(o6).map_err(map_err("OPENED6"))?,
        });
    }
    {
        let mut v4: LpmTrie<&mut MapData, [u8; 4], Ports> =
            LpmTrie::try_from(&mut m4).map_err(map_err("ALLOW4"))?;
        let mut v6: LpmTrie<&mut MapData, [u8; 16], Ports> =
            LpmTrie::try_from(&mut m6).map_err(map_err("ALLOW6"))?;
        for (net, ports) in &merged {
            let mut value = AllowPorts::default();
            match ports {
                None => value.any = 1,
                Some(p) => {
                    value.n = p.len() as u8;
                    value.ports[..p.len()].copy_from_slice(p);
                }
            }
            let value = Ports(value);
            match net {
                IpNet::V4(n) => v4
                    .insert(
                        &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                        &value,
                        0,
                    )
                    .map_err(map_err("ALLOW4"))?,
                IpNet::V6(n) => v6
                    .insert(
                        &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                        &value,
                        0,
                    )
                    .map_err(map_err("ALLOW6"))?,
            }
        }
        let mut mode: Array<&mut MapData, u32> =
            Array::try_from(&mut mm).map_err(map_err("EGRESS_MODE"))?;
        mode.set(0, &1, 0).map_err(map_err("EGRESS_MODE"))?;
    }
    // The proxy's maps are frozen too when it is off: nothing can turn it on later.
    for (name, map) in [
        ("ALLOW4", &m4),
        ("ALLOW6", &m6),
        ("EGRESS_MODE", &mm),
        ("DNS_PROXY", &mp),
        ("RESOLVERS4", &r4),
        ("RESOLVERS6", &r6),
        ("DENY4", &d4),
        ("DENY6", &d6),
    ] {
        let data = match map {
            Map::LpmTrie(d) | Map::Array(d) | Map::HashMap(d) => d,
            _ => {
                return Err(LoadError::Egress(format!(
                    "{name}: not the map type expected"
                )));
            }
        };
        freeze(data.fd().as_fd())
            .map_err(|e| LoadError::Egress(format!("freezing {name}: {e}")))?;
    }
    Ok((merged.len(), opener))
}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Id(FileId);
// SAFETY: repr(C) integers only, no padding (u64, u64).
unsafe impl Pod for Id {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct Owners(GuardOwners);
// SAFETY: repr(C) integers only, no padding (u32, u32, [[u8; 16]; 16]).
unsafe impl Pod for Owners {}

/// Block mode's credential guard: the kernel kills a process that opens one of `files`
/// ((device in the kernel's encoding, inode, owning tools)) for reading when its `comm` is
/// none of the owners. The map is then frozen. Owner names longer than a `comm` (15 bytes)
/// are cut as the kernel cuts them; past [`GUARD_OWNERS`] owners, the rest are dropped (and
/// their reads killed: closed, not open). Files past [`GUARDED_MAX`] are an error.
pub fn guard(ebpf: &mut Ebpf, files: &[(u64, u64, Vec<String>)]) -> Result<usize, LoadError> {
    use std::os::fd::AsFd;

    use aya::maps::Map;
    if files.len() > GUARDED_MAX as usize {
        return Err(LoadError::Egress(format!(
            "more than {GUARDED_MAX} credential files to guard"
        )));
    }
    let mut map = ebpf
        .take_map("GUARDED")
        .ok_or(LoadError::MissingMap("GUARDED"))?;
    {
        let mut m: HashMap<&mut MapData, Id, Owners> =
            HashMap::try_from(&mut map).map_err(|source| LoadError::Map {
                name: "GUARDED",
                source,
            })?;
        for (dev, ino, owners) in files {
            let mut v = GuardOwners::default();
            for (slot, name) in v.comm.iter_mut().zip(owners.iter().take(GUARD_OWNERS)) {
                let b = name.as_bytes();
                let n = b.len().min(15);
                slot[..n].copy_from_slice(&b[..n]);
            }
            v.n = owners.len().min(GUARD_OWNERS) as u32;
            m.insert(
                &Id(FileId {
                    dev: *dev,
                    ino: *ino,
                }),
                &Owners(v),
                0,
            )
            .map_err(|source| LoadError::Map {
                name: "GUARDED",
                source,
            })?;
        }
    }
    let Map::HashMap(data) = &map else {
        return Err(LoadError::Egress(
            "GUARDED: not the map type expected".into(),
        ));
    };
    freeze(data.fd().as_fd()).map_err(|e| LoadError::Egress(format!("freezing GUARDED: {e}")))?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str, port: Option<u16>) -> Allow {
        Allow {
            net: s.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn entries_merge_by_network_and_mapped_networks_are_ipv4() {
        let m = merge(&[
            a("10.200.7.2/32", Some(8080)),
            a("10.200.7.2/32", Some(443)),
            a("::ffff:10.200.8.0/120", Some(53)),
            a("127.0.0.1/8", None),
            a("10.200.9.0/24", Some(1)),
            a("10.200.9.0/24", None),
        ])
        .unwrap();
        assert_eq!(m[&"10.200.7.2/32".parse().unwrap()], Some(vec![8080, 443]));
        assert_eq!(m[&"10.200.8.0/24".parse().unwrap()], Some(vec![53]));
        assert_eq!(m[&"127.0.0.0/8".parse().unwrap()], None);
        assert_eq!(m[&"10.200.9.0/24".parse().unwrap()], None, "any port wins");
        let many: Vec<Allow> = (1..=9).map(|p| a("10.0.0.1/32", Some(p))).collect();
        assert!(merge(&many).unwrap_err().contains("more than 8 ports"));
    }
}
