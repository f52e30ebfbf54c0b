//! Block mode's kernel side: the egress allowlist the cgroup connect and sendmsg hooks judge
//! every destination of the run against. A destination no prefix covers (with its port) is
//! refused there: connect(2), sendto(2), sendmsg(2), TCP Fast Open and io_uring connects fail
//! with EPERM before anything leaves. IPv4-mapped IPv6 destinations are judged as IPv4.
//!
//! The allowlist is written once, before the command starts, and the maps are then frozen:
//! not even root in the run can widen it through bpf(2).

use std::collections::BTreeMap;

use aya::{
    Ebpf, Pod,
    maps::{Array, LpmTrie, MapData, lpm_trie::Key},
};
use ipnet::IpNet;
use monitor_common::{ALLOW_MAX, ALLOW_PORTS, AllowPorts};

use super::loader::{LoadError, freeze};

/// The value aya writes (plain data: integers and an array of them).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Ports(AllowPorts);

// SAFETY: repr(C) integers only, no padding (u8, u8, [u16; 8]).
unsafe impl Pod for Ports {}

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

/// Turn block mode on with this allowlist, then freeze the maps. The prefixes written.
pub fn block(ebpf: &mut Ebpf, allow: &[Allow]) -> Result<usize, LoadError> {
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
    for (name, map) in [("ALLOW4", &m4), ("ALLOW6", &m6), ("EGRESS_MODE", &mm)] {
        let data = match map {
            Map::LpmTrie(d) | Map::Array(d) => d,
            _ => {
                return Err(LoadError::Egress(format!(
                    "{name}: not the map type expected"
                )));
            }
        };
        freeze(data.fd().as_fd())
            .map_err(|e| LoadError::Egress(format!("freezing {name}: {e}")))?;
    }
    Ok(merged.len())
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
