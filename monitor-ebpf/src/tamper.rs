//! tamper sensor: calls from the watched tree that could blind buildwatch. bpf(2) is reported
//! at entry, before it takes effect: with root, a caller can detach the sensors' programs or
//! rewrite their maps (the loss counters are frozen against that; the scope map cannot be).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{BpfCall, EventKind};

use crate::emit::{ARG0, check, emit, header, in_scope};

const SENSOR: u32 = monitor_common::sensors::TAMPER;

#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub fn sys_enter_bpf(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_bpf(&ctx));
    0
}

fn try_enter_bpf(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let cmd: i64 = unsafe { ctx.read_at(ARG0)? };
    emit(
        SENSOR,
        BpfCall {
            header: header(EventKind::Bpf, 0),
            cmd: cmd as u32,
            _pad: 0,
        },
    );
    Ok(0)
}
