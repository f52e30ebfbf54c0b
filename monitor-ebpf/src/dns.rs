//! DNS capture: cgroup_skb programs on the run's cgroup copy every UDP datagram and TCP segment
//! to or from port 53 (IPv4 and IPv6) into the ring. Being attached to the socket path, they see
//! every way of sending (sendto, sendmsg, sendmmsg, write on a connected socket); userspace
//! parses the DNS messages. The programs never drop a packet: they always return 1 (allow).
//! IPv6 packets with extension headers before the transport header are not inspected.

use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_skb_load_bytes, macros::cgroup_skb,
    programs::SkBuffContext,
};
use monitor_common::{DNS_PAYLOAD_MAX, DNS_PORT, DnsPacket, EventKind, counters, flags};

use crate::emit::{cgroup_header, check, count, output_scratch, scratch};

const SENSOR: u32 = monitor_common::sensors::DNS;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[cgroup_skb(egress)]
pub fn dns_egress(ctx: SkBuffContext) -> i32 {
    check(&ctx, SENSOR, capture(&ctx, false));
    1
}

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    check(&ctx, SENSOR, capture(&ctx, true));
    1
}

#[inline(always)]
fn capture(ctx: &SkBuffContext, ingress: bool) -> Result<(), i64> {
    let mut ev = DnsPacket::default();
    // __sk_buff.protocol is the ethertype in network byte order.
    let proto = u32::from_be(ctx.skb.protocol()) >> 16;
    let l4 = if proto == ETH_P_IP {
        let vihl: u8 = ctx.load(0)?;
        // Only the first fragment carries the transport header.
        let frag: u16 = u16::from_be(ctx.load(6)?);
        if frag & 0x1fff != 0 {
            return Ok(());
        }
        ev.ip_version = 4;
        ev.protocol = ctx.load(9)?;
        let s: [u8; 4] = ctx.load(12)?;
        let d: [u8; 4] = ctx.load(16)?;
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
        ((vihl & 0x0f) as usize) * 4
    } else if proto == ETH_P_IPV6 {
        ev.ip_version = 6;
        ev.protocol = ctx.load(6)?;
        ev.saddr = ctx.load(8)?;
        ev.daddr = ctx.load(24)?;
        40
    } else {
        return Ok(());
    };
    let payload_off = match ev.protocol {
        IPPROTO_UDP => l4 + 8,
        IPPROTO_TCP => {
            let doff: u8 = ctx.load(l4 + 12)?;
            ev.tcp_seq = u32::from_be(ctx.load(l4 + 4)?);
            l4 + ((doff >> 4) as usize) * 4
        }
        _ => return Ok(()),
    };
    ev.sport = u16::from_be(ctx.load(l4)?);
    ev.dport = u16::from_be(ctx.load(l4 + 2)?);
    let server_port = if ingress { ev.sport } else { ev.dport };
    if server_port != DNS_PORT {
        return Ok(());
    }
    let total = ctx.len() as usize;
    if total <= payload_off {
        return Ok(()); // a bare TCP ACK, SYN or FIN
    }
    let orig = total - payload_off;
    let mut fl = if ingress { flags::INGRESS } else { 0 };
    if orig > DNS_PAYLOAD_MAX {
        fl |= flags::PAYLOAD_TRUNCATED;
    }
    // 1..=DNS_PAYLOAD_MAX in a form the verifier can bound (it rejects a possibly-zero size).
    let n = ((orig.min(DNS_PAYLOAD_MAX) - 1) & (DNS_PAYLOAD_MAX - 1)) + 1;
    ev.payload_len = n as u16;
    ev.orig_len = orig as u32;
    ev.header = cgroup_header(EventKind::DnsPacket, fl);
    if ingress {
        ev.header.pid = 0;
        ev.header.tid = 0;
    }
    let Some(buf) = scratch() else {
        return Ok(());
    };
    let body = size_of::<DnsPacket>();
    unsafe {
        core::ptr::write_unaligned(buf.cast::<DnsPacket>(), ev);
        if bpf_skb_load_bytes(
            ctx.as_ptr().cast(),
            payload_off as u32,
            buf.add(body).cast(),
            n as u32,
        ) < 0
        {
            count(SENSOR, counters::READ_ERROR);
            return Ok(());
        }
    }
    output_scratch(SENSOR, buf, body + n);
    Ok(())
}
