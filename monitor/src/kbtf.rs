//! Reads the one kernel structure offset the sensors need from the running kernel's BTF, so
//! the exit sensor can report wait statuses without CO-RE support in the Rust BPF toolchain.

use btf_rs::{Btf, Type};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `task_struct.exit_code`.
pub fn task_exit_code_offset() -> Result<u32, String> {
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    member_offset(&btf, "task_struct", "exit_code")
}

fn member_offset(btf: &Btf, strukt: &str, member: &str) -> Result<u32, String> {
    let types = btf
        .resolve_types_by_name(strukt)
        .map_err(|e| format!("struct {strukt}: {e}"))?;
    for ty in types {
        let Type::Struct(s) = ty else { continue };
        for m in &s.members {
            if btf.resolve_name(m).ok().as_deref() == Some(member) {
                let bits = m.bit_offset();
                if bits % 8 != 0 || bits == 0 {
                    return Err(format!("{strukt}.{member} at unusable bit offset {bits}"));
                }
                return Ok(bits / 8);
            }
        }
    }
    Err(format!("{strukt}.{member} not found in kernel BTF"))
}
