//! Reads the kernel structure offsets the sensors need from the running kernel's BTF (where a
//! task's exit status and its process's start time are, and the way from a task to an open
//! file's inode), without CO-RE support in the Rust BPF toolchain.
//!
//! A single pass over the type section finds the structs by name; nothing is indexed. (A
//! general BTF library parsed and hashed all ~100,000 kernel types, which took most of
//! buildwatch's start-up.) The file is the kernel's own, but it is still parsed with every
//! read bounds-checked.

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Where the sensors read a task: `exit_code` (the wait status at exit), `group_leader` and,
/// through it, `start_boottime` (the process's identity with its pid); and the members from a
/// task to the device and inode of one of its open files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    pub exit_code: u32,
    pub group_leader: u32,
    pub start_boottime: u32,
    /// Task → file identity; `None` when any link of the chain is missing (the open sensor
    /// then reports no identity, and symlink targets are worked out on every open).
    pub file: Option<FileOffsets>,
    /// File → its directories, for the cgroup-escape check; `None` when missing (no check).
    pub dentry: Option<DentryOffsets>,
    /// Task → its image's executable and argv; `None` when missing (exec facts then come
    /// from the caller's memory alone).
    pub image: Option<ImageOffsets>,
    /// An io_uring open request → its path; `None` when missing (io_uring opens unseen).
    pub uring: Option<UringOffsets>,
}

/// Offsets in an io_uring request (`io_kiocb`, whose command area `cmd` holds an `io_open`
/// for an open), and of `filename.name`. These may be 0: they are real offsets, not biased.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringOffsets {
    pub open_filename: u32,
    pub open_dfd: u32,
    pub open_how: u32,
    pub filename_name: u32,
    /// `io_kiocb.cmd` + `io_socket.{domain, type, protocol}`; `None` when missing (sockets
    /// made through io_uring unseen).
    pub socket: Option<[u32; 3]>,
    /// `io_kiocb.cmd` + `io_rename.{old_dfd, new_dfd, oldpath, newpath, flags}`; `None` when
    /// missing (renames and links made through io_uring unseen).
    pub rename: Option<[u32; 5]>,
    /// `io_link` has `io_rename`'s layout (the offsets above read links and symlinks too).
    pub link_like_rename: bool,
    /// `io_kiocb.cmd` + `io_unlink.{dfd, flags, filename}`; `None` when missing.
    pub unlink: Option<[u32; 3]>,
    /// `io_kiocb.cqe` + `io_cqe.fd`: the descriptor of a request on an open file; `None`
    /// when missing (fsetxattr and ftruncate through io_uring then name no file).
    pub fd: Option<u32>,
    /// `io_kiocb.cmd` + `io_xattr.filename`, and + `io_xattr.ctx` + `kernel_xattr_ctx.kname`;
    /// `None` when missing (attributes set through io_uring unseen).
    pub xattr: Option<[u32; 2]>,
    /// `io_kiocb.cmd` + `io_ftrunc.len`; `None` when missing (truncations through io_uring
    /// unseen).
    pub ftrunc_len: Option<u32>,
}

/// `task_struct.mm`, `mm_struct.{exe_file, arg_start, arg_end}`, `inode.i_nlink`,
/// `dentry.d_name.name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageOffsets {
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub inode_nlink: u32,
    /// `dentry.d_name` + `qstr.name`.
    pub dentry_name: u32,
    /// `inode.i_mode`, `inode.i_rdev` (what a new image's standard descriptors are).
    pub inode_mode: u32,
    pub inode_rdev: u32,
    /// `mm_struct.{env_start, env_end}`.
    pub mm_env_start: u32,
    pub mm_env_end: u32,
}

/// `file.f_path.dentry`, `dentry.{d_parent, d_inode}`, `super_block.s_magic`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DentryOffsets {
    /// `file.f_path` + `path.dentry`.
    pub file_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_inode: u32,
    pub sb_magic: u32,
}

/// `task_struct.files` → `files_struct.fdt` → `fdtable.fd` → `file.f_inode` →
/// `inode.{i_ino, i_sb}` → `super_block.s_dev`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
}

/// The offsets, in one pass over the kernel's BTF.
pub fn task_offsets() -> Result<TaskOffsets, String> {
    let data = std::fs::read(VMLINUX_BTF).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    // One pass. Each entry stands alone: a member the kernel lacks fails its own entry (and
    // what needs it), not the others. The last seven are optional parts (cgroup-escape check,
    // exec image).
    let wanted: [(&str, &[&str]); 15] = [
        (
            "task_struct",
            &["exit_code", "group_leader", "start_boottime", "files"],
        ),
        ("files_struct", &["fdt"]),
        ("fdtable", &["fd"]),
        ("file", &["f_inode"]),
        ("inode", &["i_ino", "i_sb"]),
        ("super_block", &["s_dev"]),
        ("dentry", &["d_parent", "d_inode"]),
        ("path", &["dentry"]),
        ("super_block", &["s_magic"]),
        ("file", &["f_path"]),
        ("task_struct", &["mm"]),
        (
            "mm_struct",
            &["exe_file", "arg_start", "arg_end", "env_start", "env_end"],
        ),
        ("inode", &["i_nlink", "i_mode", "i_rdev"]),
        ("dentry", &["d_name"]),
        ("qstr", &["name"]),
    ];
    let found = struct_offsets(&data, &wanted).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    let task = found[0]
        .as_ref()
        .map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    let member = |s: usize, m: usize| found[s].as_ref().ok().map(|o| o[m]);
    let file = (|| {
        Some(FileOffsets {
            task_files: task[3],
            files_fdt: member(1, 0)?,
            fdtable_fd: member(2, 0)?,
            file_inode: member(3, 0)?,
            inode_ino: member(4, 0)?,
            inode_sb: member(4, 1)?,
            sb_dev: member(5, 0)?,
        })
    })();
    let more = &found[8..];
    let dentry = (|| {
        // `path.dentry` may be at offset 0 of `struct path` in some kernel (it is 8 here): the
        // sum is what the programs use, and `f_path` is never first in `struct file`.
        let path_dentry = found[7].as_ref().ok().map(|o| o[0]);
        Some(DentryOffsets {
            file_dentry: more[1].as_ref().ok()?[0] + path_dentry?,
            dentry_parent: member(6, 0)?,
            dentry_inode: member(6, 1)?,
            sb_magic: more[0].as_ref().ok()?[0],
        })
    })();
    let image = (|| {
        let first = |i: usize| more[i].as_ref().ok().map(|o| o[0]);
        let mm = more[3].as_ref().ok()?;
        let inode = more[4].as_ref().ok()?;
        Some(ImageOffsets {
            task_mm: first(2)?,
            mm_exe_file: mm[0],
            mm_arg_start: mm[1],
            mm_arg_end: mm[2],
            inode_nlink: inode[0],
            dentry_name: first(5)? + first(6)?,
            inode_mode: inode[1],
            inode_rdev: inode[2],
            mm_env_start: mm[3],
            mm_env_end: mm[4],
        })
    })();
    let uring = uring_offsets(&data);
    Ok(TaskOffsets {
        exit_code: task[0],
        group_leader: task[1],
        start_boottime: task[2],
        file,
        dentry,
        image,
        uring,
    })
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32, String> {
        let b = self
            .data
            .get(at..at.checked_add(4).ok_or("offset overflow")?)
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// `io_kiocb.cmd` + `io_open.{filename, dfd, how}` and `filename.name`, where 0 is a valid
/// offset (`cmd` and `name` come first in their structs).
fn uring_offsets(data: &[u8]) -> Option<UringOffsets> {
    const RELINK: &[&str] = &["old_dfd", "new_dfd", "oldpath", "newpath", "flags"];
    let wanted: [(&str, &[&str]); 12] = [
        ("io_kiocb", &["cmd"]),
        ("io_open", &["filename", "dfd", "how"]),
        ("filename", &["name"]),
        ("io_socket", &["domain", "type", "protocol"]),
        ("io_rename", RELINK),
        ("io_link", RELINK),
        ("io_unlink", &["dfd", "flags", "filename"]),
        ("io_kiocb", &["cqe"]),
        ("io_cqe", &["fd"]),
        ("io_xattr", &["ctx", "filename"]),
        ("kernel_xattr_ctx", &["kname"]),
        ("io_ftrunc", &["len"]),
    ];
    let found = offsets_in(data, &wanted, true).ok()?;
    let cmd = found[0].as_ref().ok()?[0];
    let open = found[1].as_ref().ok()?;
    let socket = found[3]
        .as_ref()
        .ok()
        .map(|s| [cmd + s[0], cmd + s[1], cmd + s[2]]);
    let rename = found[4]
        .as_ref()
        .ok()
        .map(|r| [cmd + r[0], cmd + r[1], cmd + r[2], cmd + r[3], cmd + r[4]]);
    let link_like_rename = matches!((&found[4], &found[5]), (Ok(r), Ok(l)) if r == l);
    let unlink = found[6]
        .as_ref()
        .ok()
        .map(|u| [cmd + u[0], cmd + u[1], cmd + u[2]]);
    let fd = match (&found[7], &found[8]) {
        (Ok(cqe), Ok(fd)) => Some(cqe[0] + fd[0]),
        _ => None,
    };
    let xattr = match (&found[9], &found[10]) {
        (Ok(x), Ok(ctx)) => Some([cmd + x[1], cmd + x[0] + ctx[0]]),
        _ => None,
    };
    let ftrunc_len = found[11].as_ref().ok().map(|t| cmd + t[0]);
    Some(UringOffsets {
        open_filename: cmd + open[0],
        open_dfd: cmd + open[1],
        open_how: cmd + open[2],
        filename_name: found[2].as_ref().ok()?[0],
        socket,
        rename,
        link_like_rename,
        unlink,
        fd,
        xattr,
        ftrunc_len,
    })
}

/// Byte offset of `member` in the struct named `strukt`, from raw (little-endian) BTF.
pub fn member_offset(data: &[u8], strukt: &str, member: &str) -> Result<u32, String> {
    member_offsets(data, strukt, &[member]).map(|o| o[0])
}

/// Byte offsets of `members` (in that order) in the struct named `strukt`.
pub fn member_offsets(data: &[u8], strukt: &str, members: &[&str]) -> Result<Vec<u32>, String> {
    struct_offsets(data, &[(strukt, members)])?.remove(0)
}

/// For each (struct, members) wanted, the members' byte offsets (in that order) in the first
/// struct of that name, in one pass. A member inside an anonymous struct or union member
/// (`struct file { union { const struct path f_path; ... }; }`) is found there. The outer
/// error is unusable BTF; an inner one is a struct or member that is not there.
#[allow(clippy::type_complexity)]
pub fn struct_offsets(
    data: &[u8],
    wanted: &[(&str, &[&str])],
) -> Result<Vec<Result<Vec<u32>, String>>, String> {
    offsets_in(data, wanted, false)
}

/// [`struct_offsets`]; `zero_ok`: a member at offset 0 is an answer, not an error.
#[allow(clippy::type_complexity)]
fn offsets_in(
    data: &[u8],
    wanted: &[(&str, &[&str])],
    zero_ok: bool,
) -> Result<Vec<Result<Vec<u32>, String>>, String> {
    let r = Reader { data };
    if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
        return Err("not little-endian BTF (bad magic)".into());
    }
    let hdr_len = r.u32(4)? as usize;
    let (type_off, type_len) = (r.u32(8)? as usize, r.u32(12)? as usize);
    let (str_off, str_len) = (r.u32(16)? as usize, r.u32(20)? as usize);
    let types = hdr_len.checked_add(type_off).ok_or("offset overflow")?;
    let types_end = types.checked_add(type_len).ok_or("offset overflow")?;
    let str_start = hdr_len.checked_add(str_off).ok_or("offset overflow")?;
    let strings = data
        .get(str_start..str_start.checked_add(str_len).ok_or("offset overflow")?)
        .ok_or("string section out of bounds")?;
    if types_end > data.len() {
        return Err("type section out of bounds".into());
    }
    let name = |off: u32| -> &[u8] {
        let s = strings.get(off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    };
    // Where each type starts (type id N is entry N-1): anonymous members name their type by
    // id, which may come later in the section.
    let mut positions: Vec<usize> = Vec::new();
    let mut structs: Vec<Option<usize>> = vec![None; wanted.len()];
    let mut at = types;
    while at < types_end {
        let name_off = r.u32(at)?;
        let info = r.u32(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra = match kind {
            // int, var, decl_tag
            1 | 14 | 17 => 4,
            // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
            2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
            3 => 12,
            // struct, union, datasec, enum64: 12-byte entries
            4 | 5 | 15 | 19 => vlen * 12,
            // enum, func_proto: 8-byte entries
            6 | 13 => vlen * 8,
            k => return Err(format!("unknown BTF kind {k} at byte {at}")),
        };
        if kind == KIND_STRUCT {
            let this = name(name_off);
            for (w, (strukt, _)) in wanted.iter().enumerate() {
                if structs[w].is_none() && this == strukt.as_bytes() {
                    structs[w] = Some(at);
                }
            }
        }
        positions.push(at);
        at += 12 + extra;
    }
    let bt = Btf {
        r: &r,
        positions: &positions,
        name: &name,
    };
    Ok(wanted
        .iter()
        .zip(&structs)
        .map(|((strukt, members), found)| {
            let at = found.ok_or_else(|| format!("struct {strukt} not found in kernel BTF"))?;
            members
                .iter()
                .map(|member| {
                    let bits = bt
                        .member_bits(at, member.as_bytes(), 0)?
                        .ok_or_else(|| format!("{strukt}.{member} not found in kernel BTF"))?;
                    let first = FIRST_MEMBERS.contains(&(*strukt, *member));
                    if bits % 8 != 0 || (bits == 0 && !zero_ok && !first) {
                        return Err(format!("{strukt}.{member} at unusable bit offset {bits}"));
                    }
                    Ok(bits / 8)
                })
                .collect()
        })
        .collect())
}

/// Members that are their struct's first in every kernel: offset 0 is their answer, not a
/// sign of a missed lookup.
const FIRST_MEMBERS: &[(&str, &str)] = &[("inode", "i_mode")];

/// The type section, indexed.
struct Btf<'a, F: Fn(u32) -> &'a [u8]> {
    r: &'a Reader<'a>,
    positions: &'a [usize],
    name: &'a F,
}

impl<'a, F: Fn(u32) -> &'a [u8]> Btf<'a, F> {
    /// Bit offset of `member` in the struct or union at byte `at`, looking into anonymous
    /// struct and union members (a few levels deep).
    fn member_bits(&self, at: usize, member: &[u8], depth: u32) -> Result<Option<u32>, String> {
        let info = self.r.u32(at + 4)?;
        let vlen = (info & 0xffff) as usize;
        let bitfields = info & (1 << 31) != 0;
        for m in 0..vlen {
            let e = at + 12 + m * 12;
            let name_off = self.r.u32(e)?;
            let raw = self.r.u32(e + 8)?;
            let bits = if bitfields { raw & 0x00ff_ffff } else { raw };
            if (self.name)(name_off) == member {
                return Ok(Some(bits));
            }
            if name_off == 0
                && depth < 3
                && let Some(inner) = self.aggregate(self.r.u32(e + 4)?)?
                && let Some(b) = self.member_bits(inner, member, depth + 1)?
            {
                return Ok(Some(bits + b));
            }
        }
        Ok(None)
    }

    /// Where the struct or union of type `id` starts, through typedefs and qualifiers.
    fn aggregate(&self, mut id: u32) -> Result<Option<usize>, String> {
        for _ in 0..8 {
            let Some(&at) = (id as usize)
                .checked_sub(1)
                .and_then(|i| self.positions.get(i))
            else {
                return Ok(None);
            };
            match (self.r.u32(at + 4)? >> 24) & 0x1f {
                4 | 5 => return Ok(Some(at)),
                // typedef, volatile, const, restrict, type_tag
                8 | 9 | 10 | 11 | 18 => id = self.r.u32(at + 8)?,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::member_offset;

    /// BTF with: int (kind 1), struct `s` {a at bit 0, exit_code at bit 64}, in that order.
    fn sample(bitfields: bool) -> Vec<u8> {
        let strings = b"\0int\0s\0a\0exit_code\0";
        let mut t = Vec::new();
        let mut ty = |name: u32, info: u32, size: u32, extra: &[u32]| {
            for w in [name, info, size].iter().chain(extra) {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        ty(1, 1 << 24, 4, &[32]);
        let kflag = if bitfields { 1 << 31 } else { 0 };
        ty(5, kflag | 4 << 24 | 2, 16, &[7, 1, 0, 9, 1, 64]);
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_member_offsets_and_rejects_bad_input() {
        assert_eq!(member_offset(&sample(false), "s", "exit_code"), Ok(8));
        assert_eq!(member_offset(&sample(true), "s", "exit_code"), Ok(8));
        assert!(
            member_offset(&sample(false), "s", "a")
                .unwrap_err()
                .contains("bit offset 0")
        );
        assert!(
            member_offset(&sample(false), "s", "nope")
                .unwrap_err()
                .contains("not found")
        );
        assert!(member_offset(&sample(false), "t", "a").is_err());
        // Every truncation is an error, never a panic.
        let full = sample(false);
        for n in 0..full.len() {
            assert!(
                member_offset(&full[..n], "s", "exit_code").is_err(),
                "len {n}"
            );
        }
        assert!(member_offset(b"\x00\x00rest-of-header-bytes....", "s", "a").is_err());
    }

    #[test]
    fn agrees_with_the_running_kernel() {
        let Ok(data) = std::fs::read(super::VMLINUX_BTF) else {
            return; // no kernel BTF here (the end-to-end tests need it and fail instead)
        };
        let off = member_offset(&data, "task_struct", "exit_code").unwrap();
        assert!(off > 0 && off < 16384, "{off}");
        let all = super::task_offsets().unwrap();
        assert_eq!(all.exit_code, off);
        assert!(all.group_leader > 0 && all.start_boottime > 0, "{all:?}");
        let file = all.file.expect("task → file → inode offsets");
        let dentry = all.dentry.expect("file → dentry offsets");
        let image = all.image.expect("task → image offsets");
        assert!(
            image.task_mm > 0 && image.mm_arg_end > image.mm_arg_start,
            "{image:?}"
        );
        assert!(dentry.file_dentry > 0 && dentry.sb_magic > 0, "{dentry:?}");
        assert!(
            file.task_files > 0 && file.file_inode > 0 && file.inode_sb > 0,
            "{file:?}"
        );
        let uring = all.uring.expect("io_uring request offsets");
        assert!(
            uring.fd.is_some_and(|o| o > 0)
                && uring.xattr.is_some_and(|[f, k]| f > 0 && k > 0 && f != k)
                && uring.ftrunc_len.is_some(),
            "{uring:?}"
        );
    }
}
