//! The DNS sensor: packets to and from port 53 on the anchor cgroup's sockets.

use aya::programs::CgroupSkbAttachType;
use monitor_common::sensors;

use super::Spec;

pub const SPEC: Spec = Spec {
    id: sensors::DNS,
    what: "DNS messages over UDP and TCP port 53",
    tracepoints: &[],
    sock_addr: &[],
    skb: &[
        ("dns_egress", CgroupSkbAttachType::Egress),
        ("dns_ingress", CgroupSkbAttachType::Ingress),
    ],
};
