//! The fields a condition can test: their names, types, and the event kinds that carry them.
//! The analyzer supplies values through [`Subject`]; the compiler checks names and types here.

use std::{borrow::Cow, net::IpAddr};

/// Event kinds as a bit set, so rules can be indexed by the kinds they can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Kinds(pub u32);

pub const KIND_NAMES: &[&str] = &[
    "exec",
    "fork",
    "exit",
    "open",
    "chdir",
    "connect",
    "send",
    "straggler",
    "lost",
    "ptrace",
    "process_vm",
    "dns",
    "bpf",
    "socket",
    "rename",
    "link",
    "signal",
    "escape",
    "unlink",
    "chmod",
    "bind",
    "setxattr",
    "listen",
    "truncate",
];

const _: () = assert!(KIND_NAMES.len() < 32, "Kinds is a u32 bit set");

impl Kinds {
    pub const ALL: Kinds = Kinds((1 << KIND_NAMES.len() as u32) - 1);
    pub const NONE: Kinds = Kinds(0);

    pub fn of(name: &str) -> Option<Kinds> {
        Kinds::index(name).map(|i| Kinds(1 << i))
    }

    fn list(names: &[&str]) -> Kinds {
        Kinds(
            names
                .iter()
                .map(|n| Kinds::of(n).map_or(0, |k| k.0))
                .fold(0, |a, b| a | b),
        )
    }

    pub fn index(name: &str) -> Option<usize> {
        KIND_NAMES.iter().position(|k| *k == name)
    }

    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    pub fn and(self, o: Kinds) -> Kinds {
        Kinds(self.0 & o.0)
    }

    pub fn or(self, o: Kinds) -> Kinds {
        Kinds(self.0 | o.0)
    }

    pub fn names(self) -> Vec<&'static str> {
        KIND_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, n)| *n)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Str,
    /// Several strings; a test holds when it holds for any of them.
    StrList,
    Num,
    Ip,
    Bool,
}

/// Which process a `proc`-like field describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Proc,
    Parent,
    /// Every ancestor (parent first); list-valued.
    Ancestor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcField {
    Pid,
    /// Basename of the executable (for a script: the script, as the kernel's comm).
    Name,
    Exe,
    /// The tool a person would name: for an interpreter running a script or module
    /// (`node …/npm-cli.js`, `python3 -m pip`), the script or module; otherwise `name`.
    Tool,
    /// The script an interpreter runs, when there is one.
    Script,
    /// `tool` when the tool's own file (script, else executable) is installed software:
    /// under /usr, /bin, /opt … and not written during the run; otherwise empty. What
    /// owning-tool exceptions check: a script named `aws` in the workspace is not the AWS CLI.
    OwnerTool,
    Argv,
    /// One argument, `proc.argv[N]`.
    Arg(u8),
    /// Arguments after argv[0], joined by spaces.
    Args,
    /// argv joined by spaces.
    Cmdline,
    Cwd,
    /// Names of the secret variables its environment held at its last exec.
    SecretEnv,
    /// `secret_env` is not empty.
    HoldsSecrets,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    EvtType,
    EvtFailed,
    EvtError,
    Proc(Scope, ProcField),
    PkgName,
    PkgVersion,
    PkgManager,
    FilePath,
    /// `target` when the path went through a symlink, else `path`.
    FileTarget,
    /// `path`, and `target` too when it differs: one test on both, each string once.
    FilePaths,
    FileName,
    FileDir,
    FileFlags,
    FileWrite,
    FileCreate,
    /// The path is under /proc/PID/ of a process other than the opener.
    FileOtherProc,
    /// For /proc/PID/X and /proc/PID/task/TID/X: X.
    FileProcEntry,
    FileSource,
    FileCgroupOutside,
    FileBuildwatchPolicy,
    FileByHandle,
    EvtKilled,
    /// For /proc/PID/…: how PID relates to the opener (self, descendant, run, outside).
    FileProcRelation,
    ProcListedProcesses,
    NetUnixPath,
    PipeIntoInterpreter,
    PipeFromNetwork,
    PipeWriter,
    PipeReader,
    PipeSide,
    DnsSecret,
    ExecEnv,
    ExecInjectedVar,
    ExecInjectedFile,
    ExecInjectedWritten,
    ExecSecret,
    XattrName,
    BindAddr,
    BindPort,
    BindProtocol,
    BindLoopback,
    ChmodMode,
    ChmodExec,
    ChmodSetid,
    FileWriter,
    ProcReadOtherEnviron,
    NetFamily,
    NetAddr,
    NetPort,
    NetProtocol,
    NetLoopback,
    /// The destination is in the policy's allowlist (loopback is unless the policy says not).
    NetAllowed,
    /// Block mode refused the destination in the kernel (the call failed with EPERM).
    NetRefused,
    ExecPath,
    ExecFilename,
    /// The executed file was created or written during this run.
    ExecWrittenInRun,
    /// `proc.name` of the process that last wrote the executed file during the run.
    ExecWriter,
    ExecMemfd,
    ExecDeleted,
    PtraceRequest,
    ProcessVmOp,
    BpfCmd,
    SocketFamily,
    SignalName,
    SignalAimedAt,
    ExitSignal,
    SocketType,
    TargetPid,
    TargetExe,
    TargetName,
    /// How the target relates to the acting process: self, descendant, run, outside.
    TargetRelation,
    NetDomain,
    NetResolved,
    NetResolver,
    NetAllowedByAddress,
    NetEndpoint,
    DnsDirection,
    DnsProtocol,
    DnsQname,
    DnsQtype,
    DnsRcode,
    DnsResolver,
    DnsSystemResolver,
    DnsMalformed,
    DnsUnsolicited,
    DnsRefused,
    DnsDomain,
    DnsSubdomain,
    DnsNameLen,
    DnsLabelMax,
    DnsEncoding,
    DnsLongLabel,
    DnsLongName,
    DnsHighEntropy,
    DnsSubdomains,
    DnsRareQueries,
    DnsManySubdomains,
    DnsRareTypeBurst,
}

struct Spec {
    name: &'static str,
    field: Field,
    ty: Type,
    kinds: &'static [&'static str],
    doc: &'static str,
}

const ANY: &[&str] = &[];
/// Opens, and renames and links (the file fields describe the new name: the file written).
const FILE: &[&str] = &[
    "open", "rename", "link", "unlink", "chmod", "setxattr", "truncate",
];
const NET: &[&str] = &["connect", "send"];
const EXEC: &[&str] = &["exec"];
const PIPE: &[&str] = &["exec", "connect", "send"];
const TARGET: &[&str] = &["ptrace", "process_vm"];
const DNS: &[&str] = &["dns"];

macro_rules! spec {
    ($name:expr, $field:expr, $ty:ident, $kinds:expr, $doc:expr) => {
        Spec {
            name: $name,
            field: $field,
            ty: Type::$ty,
            kinds: $kinds,
            doc: $doc,
        }
    };
}

const SPECS: &[Spec] = &[
    spec!(
        "evt.type",
        Field::EvtType,
        Str,
        ANY,
        "event kind: exec, open, connect, send, dns, ptrace, process_vm, fork, exit, chdir"
    ),
    spec!(
        "evt.failed",
        Field::EvtFailed,
        Bool,
        ANY,
        "the syscall failed"
    ),
    spec!(
        "evt.error",
        Field::EvtError,
        Str,
        ANY,
        "errno name when the syscall failed (ENOENT…)"
    ),
    spec!(
        "pkg.name",
        Field::PkgName,
        Str,
        ANY,
        "package whose install/build script runs this process (best effort)"
    ),
    spec!(
        "pkg.version",
        Field::PkgVersion,
        Str,
        ANY,
        "that package's version"
    ),
    spec!("pkg.manager", Field::PkgManager, Str, ANY, "npm or pip"),
    spec!(
        "file.path",
        Field::FilePath,
        Str,
        FILE,
        "absolute path opened"
    ),
    spec!(
        "file.target",
        Field::FileTarget,
        Str,
        FILE,
        "path with symlinks resolved"
    ),
    spec!(
        "file.paths",
        Field::FilePaths,
        StrList,
        FILE,
        "file.path, and file.target when a symlink made it differ"
    ),
    spec!(
        "file.name",
        Field::FileName,
        Str,
        FILE,
        "basename of file.path"
    ),
    spec!(
        "file.dir",
        Field::FileDir,
        Str,
        FILE,
        "directory of file.path"
    ),
    spec!(
        "file.flags",
        Field::FileFlags,
        StrList,
        FILE,
        "read, write, create, truncate, append…"
    ),
    spec!(
        "file.write",
        Field::FileWrite,
        Bool,
        FILE,
        "opened for writing, creating, truncating or appending"
    ),
    spec!(
        "file.create",
        Field::FileCreate,
        Bool,
        FILE,
        "opened with O_CREAT or O_TMPFILE"
    ),
    spec!(
        "file.other_proc",
        Field::FileOtherProc,
        Bool,
        FILE,
        "under /proc/PID/ of another process"
    ),
    spec!(
        "file.source",
        Field::FileSource,
        Str,
        &["rename", "link"],
        "for a rename or link: the file renamed or linked (a symlink's content, as given); \
         file.path is the new name"
    ),
    spec!(
        "file.by_handle",
        Field::FileByHandle,
        Bool,
        FILE,
        "opened with open_by_handle_at (a file handle, no path; the path is what /proc said \
         the new descriptor named)"
    ),
    spec!(
        "file.buildwatch_policy",
        Field::FileBuildwatchPolicy,
        Bool,
        FILE,
        "the path (or its symlink target) is a file buildwatch reads as policy: any \
         .buildwatch.yaml, or a policy or rule file this run loaded"
    ),
    spec!(
        "file.cgroup_outside",
        Field::FileCgroupOutside,
        Bool,
        FILE,
        "a cgroup v2 file outside the run's cgroups opened for writing (moving a process out of \
         the run, freezing or killing another cgroup); the kernel decides, from the file it opened"
    ),
    spec!(
        "evt.killed",
        Field::EvtKilled,
        Bool,
        FILE,
        "the kernel killed the process before the call returned"
    ),
    spec!(
        "file.proc_entry",
        Field::FileProcEntry,
        Str,
        FILE,
        "X in /proc/PID/X (mem, environ, maps…)"
    ),
    spec!(
        "file.proc_relation",
        Field::FileProcRelation,
        Str,
        FILE,
        "for /proc/PID/…: self, descendant (of the opener), run (another process of this run) or outside"
    ),
    spec!(
        "proc.listed_processes",
        Field::ProcListedProcesses,
        Bool,
        ANY,
        "the process opened /proc itself earlier: it lists the process table, as ps and top do"
    ),
    spec!(
        "proc.read_other_environ",
        Field::ProcReadOtherEnviron,
        Bool,
        ANY,
        "the process, or one it descends from, read /proc/PID/environ of a process that is not \
         its own descendant earlier in the run"
    ),
    spec!(
        "net.family",
        Field::NetFamily,
        Str,
        NET,
        "inet, inet6, unix"
    ),
    spec!(
        "net.addr",
        Field::NetAddr,
        Ip,
        NET,
        "destination IP (compare with addresses or CIDRs)"
    ),
    spec!("net.port", Field::NetPort, Num, NET, "destination port"),
    spec!(
        "net.protocol",
        Field::NetProtocol,
        Str,
        NET,
        "udp for send events; empty for connect"
    ),
    spec!(
        "net.loopback",
        Field::NetLoopback,
        Bool,
        NET,
        "destination is loopback"
    ),
    spec!(
        "net.allowed",
        Field::NetAllowed,
        Bool,
        NET,
        "destination is in the policy's allowlist"
    ),
    spec!(
        "net.refused",
        Field::NetRefused,
        Bool,
        NET,
        "block mode refused the destination in the kernel (EPERM; nothing was sent)"
    ),
    spec!(
        "exec.path",
        Field::ExecPath,
        Str,
        EXEC,
        "absolute path executed"
    ),
    spec!(
        "exec.filename",
        Field::ExecFilename,
        Str,
        EXEC,
        "filename as passed to execve"
    ),
    spec!(
        "exec.written_in_run",
        Field::ExecWrittenInRun,
        Bool,
        EXEC,
        "the executed file, or the script an interpreter runs, was written during this run"
    ),
    spec!(
        "exec.writer",
        Field::ExecWriter,
        Str,
        EXEC,
        "executable name of the process that wrote the executed file (else the script an \
         interpreter runs) during this run: for `curl … > f`, curl (its standard output was \
         the file), not the shell that opened it"
    ),
    spec!(
        "pipe.into_interpreter",
        Field::PipeIntoInterpreter,
        Bool,
        PIPE,
        "exec: the new shell or interpreter reads its program from a pipe on its standard \
         input; connect/send: a process that reads its program that way reads the caller's \
         standard output"
    ),
    spec!(
        "pipe.from_network",
        Field::PipeFromNetwork,
        Bool,
        PIPE,
        "exec: a process writing into its standard input's pipe connected or sent to an IP \
         address; connect/send: the caller did (it does now)"
    ),
    spec!(
        "pipe.writer",
        Field::PipeWriter,
        StrList,
        PIPE,
        "exec: names of the programs writing into its standard input's pipe (those that \
         exec'd); connect/send: the caller's name"
    ),
    spec!(
        "pipe.reader",
        Field::PipeReader,
        StrList,
        PIPE,
        "exec: the new program's name when it reads its program from the pipe; connect/send: \
         the programs reading their program from the caller's standard output"
    ),
    spec!(
        "exec.env",
        Field::ExecEnv,
        StrList,
        EXEC,
        "NAME=value of the kept environment variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, \
         NODE_OPTIONS, PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, BASH_ENV, ENV, PERL5OPT, PERL5LIB, \
         RUBYOPT, npm_lifecycle_event, npm_package_name, npm_package_version)"
    ),
    spec!(
        "exec.injected_var",
        Field::ExecInjectedVar,
        Str,
        EXEC,
        "the variable that makes the program load a file of code: LD_PRELOAD, LD_AUDIT, \
         PYTHONSTARTUP, BASH_ENV, ENV, NODE_OPTIONS (--require, --import, --loader), RUBYOPT (-r)"
    ),
    spec!(
        "exec.injected_file",
        Field::ExecInjectedFile,
        Str,
        EXEC,
        "the file it names (absolute; the first written during the run or under a temporary \
         directory, else the first)"
    ),
    spec!(
        "exec.injected_written",
        Field::ExecInjectedWritten,
        Bool,
        EXEC,
        "that file was written during this run, or is under /tmp, /var/tmp or /dev/shm"
    ),
    spec!(
        "exec.secret",
        Field::ExecSecret,
        Str,
        EXEC,
        "the secret variable (the policy's secrets:) whose value an argument carries, raw, \
         reversed, or in hex, base32, base64 or URL encoding; empty when none. The argument \
         itself is replaced by <redacted:VAR> in every output"
    ),
    spec!(
        "xattr.name",
        Field::XattrName,
        Str,
        &["setxattr"],
        "the extended attribute set (security.capability holds a file's capabilities)"
    ),
    spec!(
        "bind.addr",
        Field::BindAddr,
        Ip,
        &["bind", "listen"],
        "the local address a socket is bound to, or listens on (0.0.0.0 or :: for every address; none for a listen whose socket is unknown)"
    ),
    spec!(
        "bind.port",
        Field::BindPort,
        Num,
        &["bind", "listen"],
        "the local port (0: any, or a listen's socket unknown)"
    ),
    spec!(
        "bind.protocol",
        Field::BindProtocol,
        Str,
        &["bind", "listen"],
        "tcp, udp, or ip-proto-N; for a listen: tcp, unix, or unknown (the socket had gone, or was not in /proc's tables)"
    ),
    spec!(
        "bind.loopback",
        Field::BindLoopback,
        Bool,
        &["bind", "listen"],
        "the address is a loopback one (reachable from this machine only); false when unknown"
    ),
    spec!(
        "chmod.mode",
        Field::ChmodMode,
        Num,
        &["chmod"],
        "the new mode (compare with numbers: 0o4755 is 2541)"
    ),
    spec!(
        "chmod.exec",
        Field::ChmodExec,
        Bool,
        &["chmod"],
        "the new mode lets someone execute the file"
    ),
    spec!(
        "chmod.setid",
        Field::ChmodSetid,
        Bool,
        &["chmod"],
        "the new mode has the setuid or setgid bit"
    ),
    spec!(
        "file.writer",
        Field::FileWriter,
        Str,
        FILE,
        "executable name of the process that wrote the file during this run (empty when none): \
         for `curl … > f`, curl"
    ),
    spec!(
        "pipe.side",
        Field::PipeSide,
        Str,
        PIPE,
        "reader (an exec that reads its program from a pipe), writer (an exec or a connection \
         whose standard output such a program reads), or empty"
    ),
    spec!(
        "exec.memfd",
        Field::ExecMemfd,
        Bool,
        EXEC,
        "executes an anonymous memory file (memfd)"
    ),
    spec!(
        "exec.deleted",
        Field::ExecDeleted,
        Bool,
        EXEC,
        "the executed file had no name left when it ran (deleted, or a memfd): the kernel's \
         link count"
    ),
    spec!(
        "ptrace.request",
        Field::PtraceRequest,
        Str,
        &["ptrace"],
        "attach, seize or traceme"
    ),
    spec!(
        "signal.name",
        Field::SignalName,
        Str,
        &["signal"],
        "the signal (SIGKILL, SIGSTOP, …; empty for pidfd_open)"
    ),
    spec!(
        "exit.signal",
        Field::ExitSignal,
        Str,
        &["exit"],
        "the signal that ended the process (SIGKILL, SIGSYS, …; empty when it called exit)"
    ),
    spec!(
        "signal.aimed_at",
        Field::SignalAimedAt,
        Str,
        &["signal"],
        "buildwatch (buildwatch, its guardian or their process group), every-process or \
         own-group (the caller's process group, which is buildwatch's unless the build made \
         its own)"
    ),
    spec!(
        "socket.family",
        Field::SocketFamily,
        Str,
        &["socket"],
        "family of a raw or packet socket: packet, inet, inet6"
    ),
    spec!(
        "socket.type",
        Field::SocketType,
        Str,
        &["socket"],
        "raw, packet (the legacy SOCK_PACKET), dgram (a cooked packet socket), …"
    ),
    spec!(
        "bpf.cmd",
        Field::BpfCmd,
        Str,
        &["bpf"],
        "the bpf(2) command: map_update_elem, link_detach, prog_load, ... (cmd_N when unknown)"
    ),
    spec!(
        "process_vm.op",
        Field::ProcessVmOp,
        Str,
        &["process_vm"],
        "read (process_vm_readv) or write (process_vm_writev)"
    ),
    spec!(
        "target.pid",
        Field::TargetPid,
        Num,
        TARGET,
        "pid of the process acted on, as the caller named it"
    ),
    spec!(
        "target.exe",
        Field::TargetExe,
        Str,
        TARGET,
        "executable of the process acted on"
    ),
    spec!(
        "target.name",
        Field::TargetName,
        Str,
        TARGET,
        "basename of target.exe"
    ),
    spec!(
        "target.relation",
        Field::TargetRelation,
        Str,
        TARGET,
        "self, descendant (of the actor), run (another process of this run) or outside"
    ),
    spec!(
        "net.domain",
        Field::NetDomain,
        Str,
        NET,
        "the name this run's DNS resolved the destination from"
    ),
    spec!(
        "net.resolved",
        Field::NetResolved,
        Bool,
        NET,
        "the destination was an answer to one of this run's DNS queries"
    ),
    spec!(
        "net.resolver",
        Field::NetResolver,
        Bool,
        NET,
        "port 53 of a system resolver (/etc/resolv.conf) or of one in the policy's dns.resolvers"
    ),
    spec!(
        "net.allowed_by_address",
        Field::NetAllowedByAddress,
        Bool,
        NET,
        "allowed by an address or network entry (or as loopback), whatever the name"
    ),
    spec!(
        "net.unix_path",
        Field::NetUnixPath,
        Str,
        NET,
        "for a unix socket: the path connected to (abstract names start with @)"
    ),
    spec!(
        "net.endpoint",
        Field::NetEndpoint,
        Str,
        NET,
        "ADDR:PORT, with the name in front when DNS gave one: name (ADDR):PORT"
    ),
    spec!(
        "dns.direction",
        Field::DnsDirection,
        Str,
        DNS,
        "query or response"
    ),
    spec!("dns.protocol", Field::DnsProtocol, Str, DNS, "udp or tcp"),
    spec!(
        "dns.secret",
        Field::DnsSecret,
        Str,
        DNS,
        "for a query: the name of the secret variable (buildwatch's environment: AWS_*, \
         *_TOKEN…, the policy's secrets:) whose value the name carries in some encoding, alone \
         or joined with earlier queries' labels to the same domain; empty when none"
    ),
    spec!(
        "dns.qname",
        Field::DnsQname,
        Str,
        DNS,
        "the question's name (\\DDD for unusual bytes)"
    ),
    spec!(
        "dns.qtype",
        Field::DnsQtype,
        Str,
        DNS,
        "A, AAAA, TXT, NULL, ANY, TYPE<N>…"
    ),
    spec!(
        "dns.rcode",
        Field::DnsRcode,
        Str,
        DNS,
        "response code (NOERROR, NXDOMAIN…)"
    ),
    spec!(
        "dns.resolver",
        Field::DnsResolver,
        Ip,
        DNS,
        "the server's address"
    ),
    spec!(
        "dns.system_resolver",
        Field::DnsSystemResolver,
        Bool,
        DNS,
        "the server is in /etc/resolv.conf or the policy's dns.resolvers"
    ),
    spec!(
        "dns.unsolicited",
        Field::DnsUnsolicited,
        Bool,
        DNS,
        "a response that answers no query of this run (id, client port, server, question)"
    ),
    spec!(
        "dns.refused",
        Field::DnsRefused,
        Bool,
        DNS,
        "block mode's DNS proxy refuses this query: its name matches no domain entry of the \
         allowlist, or names a DNS-over-HTTPS service"
    ),
    spec!(
        "dns.malformed",
        Field::DnsMalformed,
        Bool,
        DNS,
        "the message could not be parsed"
    ),
    spec!(
        "dns.domain",
        Field::DnsDomain,
        Str,
        DNS,
        "registrable domain of the name (public suffix + one label)"
    ),
    spec!(
        "dns.subdomain",
        Field::DnsSubdomain,
        Str,
        DNS,
        "labels left of dns.domain"
    ),
    spec!(
        "dns.name_len",
        Field::DnsNameLen,
        Num,
        DNS,
        "length of the name"
    ),
    spec!(
        "dns.label_max",
        Field::DnsLabelMax,
        Num,
        DNS,
        "length of its longest label"
    ),
    spec!(
        "dns.encoding",
        Field::DnsEncoding,
        Str,
        DNS,
        "hex, base32 or base64 when a subdomain label looks encoded, else empty"
    ),
    spec!(
        "dns.long_label",
        Field::DnsLongLabel,
        Bool,
        DNS,
        "a label reaches the policy's dns.long_label"
    ),
    spec!(
        "dns.long_name",
        Field::DnsLongName,
        Bool,
        DNS,
        "the name reaches dns.long_name"
    ),
    spec!(
        "dns.high_entropy",
        Field::DnsHighEntropy,
        Bool,
        DNS,
        "the subdomain's entropy reaches dns.entropy (over at least dns.entropy_min_len characters)"
    ),
    spec!(
        "dns.subdomains",
        Field::DnsSubdomains,
        Num,
        DNS,
        "distinct names queried under dns.domain within the window"
    ),
    spec!(
        "dns.rare_queries",
        Field::DnsRareQueries,
        Num,
        DNS,
        "TXT/NULL/ANY queries under dns.domain within the window"
    ),
    spec!(
        "dns.many_subdomains",
        Field::DnsManySubdomains,
        Bool,
        DNS,
        "dns.subdomains reaches the policy's dns.max_subdomains"
    ),
    spec!(
        "dns.rare_type_burst",
        Field::DnsRareTypeBurst,
        Bool,
        DNS,
        "dns.rare_queries reaches dns.max_rare_queries"
    ),
];

const PROC_SPECS: &[(&str, ProcField, Type, &str)] = &[
    ("pid", ProcField::Pid, Type::Num, "process id"),
    (
        "name",
        ProcField::Name,
        Type::Str,
        "basename of the executable",
    ),
    ("exe", ProcField::Exe, Type::Str, "executable path"),
    (
        "tool",
        ProcField::Tool,
        Type::Str,
        "script or module an interpreter runs, else name",
    ),
    (
        "script",
        ProcField::Script,
        Type::Str,
        "script path an interpreter runs",
    ),
    (
        "owner_tool",
        ProcField::OwnerTool,
        Type::Str,
        "tool, when its own file (script, else executable) is installed software (under /usr, \
         /bin, /sbin, /lib, /opt, /snap, /nix/store) not written during the run; else empty",
    ),
    (
        "argv",
        ProcField::Argv,
        Type::StrList,
        "arguments (any); argv[N] for one",
    ),
    (
        "args",
        ProcField::Args,
        Type::Str,
        "arguments after argv[0], space-joined",
    ),
    (
        "cmdline",
        ProcField::Cmdline,
        Type::Str,
        "argv space-joined",
    ),
    (
        "cwd",
        ProcField::Cwd,
        Type::Str,
        "working directory at exec",
    ),
    (
        "secret_env",
        ProcField::SecretEnv,
        Type::StrList,
        "names of the variables holding secrets (the policy's secrets:, by default AWS_* keys, \
         *_TOKEN, *_SECRET, *_KEY, *PASSWORD*…) in its environment at its last exec, from the \
         kernel's copy of the environment (its first 16 KiB); never their values",
    ),
    (
        "holds_secrets",
        ProcField::HoldsSecrets,
        Type::Bool,
        "secret_env is not empty: its environment holds secrets",
    ),
];

pub struct Resolved {
    pub field: Field,
    pub ty: Type,
    pub kinds: Kinds,
}

/// Look a field name up.
pub fn resolve(name: &str) -> Option<Resolved> {
    if let Some(s) = SPECS.iter().find(|s| s.name == name) {
        return Some(Resolved {
            field: s.field,
            ty: s.ty,
            kinds: if s.kinds.is_empty() {
                Kinds::ALL
            } else {
                Kinds::list(s.kinds)
            },
        });
    }
    let (scope, rest) = name.split_once('.')?;
    let scope = match scope {
        "proc" => Scope::Proc,
        "parent" => Scope::Parent,
        "ancestor" => Scope::Ancestor,
        _ => return None,
    };
    let (pf, ty) = if let Some(idx) = rest.strip_prefix("argv[").and_then(|r| r.strip_suffix(']')) {
        (ProcField::Arg(idx.parse().ok()?), Type::Str)
    } else {
        let (_, pf, ty, _) = PROC_SPECS.iter().find(|(n, ..)| *n == rest)?;
        (*pf, *ty)
    };
    let ty = match (scope, ty) {
        (Scope::Ancestor, Type::Num) => return None,
        (Scope::Ancestor, _) => Type::StrList,
        _ => ty,
    };
    Some(Resolved {
        field: Field::Proc(scope, pf),
        ty,
        kinds: Kinds::ALL,
    })
}

/// Every field with a one-line description, for `buildwatch rules fields` and the docs.
pub fn catalogue() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    out.push(("evt.type".into(), SPECS[0].doc));
    for scope in ["proc", "parent", "ancestor"] {
        for (n, _, ty, doc) in PROC_SPECS {
            if scope == "ancestor" && *ty == Type::Num {
                continue;
            }
            out.push((format!("{scope}.{n}"), doc));
        }
    }
    out.extend(SPECS[1..].iter().map(|s| (s.name.to_owned(), s.doc)));
    out
}

/// A field's value for one event. `Missing` makes every test false.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
    /// Lists borrowed as they are, so that a test of a list field allocates nothing: flags,
    /// argv, and a path with its symlink target.
    Cows(&'a [Cow<'a, str>]),
    Strings(&'a [String]),
    Pair(&'a str, Option<&'a str>),
    Num(i64),
    Ip(IpAddr),
    Bool(bool),
    Missing,
}

impl<'a> Val<'a> {
    /// Whether `f` holds for any string of a list value (false for other values).
    pub fn any_str(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            Val::List(l) => l.iter().any(|v| f(v)),
            Val::Cows(l) => l.iter().any(|v| f(v)),
            Val::Strings(l) => l.iter().any(|v| f(v)),
            Val::Pair(a, b) => f(a) || b.is_some_and(f),
            _ => false,
        }
    }

    /// The strings of a list value (a string is a list of one), borrowed where they can be.
    pub fn into_strs(self) -> Vec<Cow<'a, str>> {
        match self {
            Val::Str(s) => vec![s],
            Val::List(l) => l,
            Val::Cows(l) => l.iter().map(|v| Cow::Borrowed(v.as_ref())).collect(),
            Val::Strings(l) => l.iter().map(|v| Cow::Borrowed(v.as_str())).collect(),
            Val::Pair(a, b) => std::iter::once(a).chain(b).map(Cow::Borrowed).collect(),
            _ => Vec::new(),
        }
    }

    /// The value as it appears in a finding's message.
    pub fn render(&self) -> String {
        match self {
            Val::Str(s) => s.to_string(),
            Val::List(_) | Val::Cows(_) | Val::Strings(_) | Val::Pair(..) => {
                self.clone().into_strs().join(" ")
            }
            Val::Num(n) => n.to_string(),
            Val::Ip(ip) => ip.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Missing => "<none>".into(),
        }
    }
}

/// What conditions are evaluated against: one event in its process context.
pub trait Subject {
    /// Index in [`KIND_NAMES`].
    fn kind(&self) -> usize;
    fn value(&self, field: Field) -> Val<'_>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_with_types_and_kinds() {
        let f = resolve("file.path").unwrap();
        assert_eq!((f.field, f.ty), (Field::FilePath, Type::Str));
        assert_eq!(
            f.kinds.names(),
            vec![
                "open", "rename", "link", "unlink", "chmod", "setxattr", "truncate"
            ]
        );
        assert_eq!(
            resolve("parent.argv[1]").unwrap().field,
            Field::Proc(Scope::Parent, ProcField::Arg(1))
        );
        assert_eq!(resolve("ancestor.name").unwrap().ty, Type::StrList);
        assert!(resolve("ancestor.pid").is_none());
        assert!(resolve("proc.argv[x]").is_none());
        assert!(resolve("bogus.field").is_none());
        assert_eq!(resolve("evt.type").unwrap().kinds, Kinds::ALL);
        assert!(catalogue().iter().any(|(n, _)| n == "ancestor.tool"));
    }
}
