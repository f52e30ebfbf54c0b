//! Load generator for `cargo xtask bench`: tight, bounded loops of the syscalls buildwatch
//! watches. Each loop times itself (CLOCK_MONOTONIC, process start-up excluded) and prints one
//! JSON line `{"ops":N,"ns":T,...}` on stdout. Network traffic goes only to loopback: the
//! connect loop talks to its own listener on 127.0.0.1, the DNS loop to the resolver address
//! it is given, which must be a loopback address.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    process::exit,
    time::Duration,
};

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn die(msg: &str) -> ! {
    eprintln!("bw-load: {msg}");
    exit(2)
}

fn usage() -> ! {
    die(
        "usage: bw-load now | open N PATH | exec N PROGRAM | connect N | dns N RESOLVER_IP \
         | rate PROCS RATE SECS PATH | latency N INTERVAL_MS DIR",
    )
}

fn num(s: Option<&String>) -> u64 {
    match s.map(|s| s.parse::<u64>()) {
        Some(Ok(n)) => n,
        _ => usage(),
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| die("argument contains NUL"))
}

fn report(ops: u64, ns: u64, extra: &str) {
    println!("{{\"ops\":{ops},\"ns\":{ns}{extra}}}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // Start-up probe: the time this program began running.
        Some("now") => println!("{}", now_ns()),
        Some("open") => open_loop(
            num(args.get(1)),
            &cstr(args.get(2).unwrap_or_else(|| usage())),
        ),
        Some("exec") => exec_loop(
            num(args.get(1)),
            &cstr(args.get(2).unwrap_or_else(|| usage())),
        ),
        Some("connect") => connect_loop(num(args.get(1))),
        Some("dns") => dns_loop(num(args.get(1)), args.get(2).unwrap_or_else(|| usage())),
        Some("rate") => rate(
            num(args.get(1)),
            num(args.get(2)),
            num(args.get(3)),
            &cstr(args.get(4).unwrap_or_else(|| usage())),
        ),
        Some("latency") => latency(
            num(args.get(1)),
            num(args.get(2)),
            args.get(3).unwrap_or_else(|| usage()),
        ),
        _ => usage(),
    }
}

fn open_close(path: &CString) {
    // SAFETY: a NUL-terminated path; the fd is ours to close.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        die(&format!("open: {}", std::io::Error::last_os_error()));
    }
    unsafe { libc::close(fd) };
}

/// N × (openat + close) of PATH.
fn open_loop(n: u64, path: &CString) {
    let t = now_ns();
    for _ in 0..n {
        open_close(path);
    }
    report(n, now_ns() - t, "");
}

/// N × (fork + execve PROGRAM + wait).
fn exec_loop(n: u64, program: &CString) {
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let t = now_ns();
    for _ in 0..n {
        // SAFETY: the child only calls execve and _exit (async-signal-safe) on memory prepared
        // before the fork.
        unsafe {
            let pid = libc::fork();
            if pid < 0 {
                die("fork failed");
            }
            if pid == 0 {
                libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                die("the exec'd program failed");
            }
        }
    }
    report(n, now_ns() - t, "");
}

/// N × TCP connect to our own listener on 127.0.0.1, each accepted and closed right after by
/// the same thread. (An acceptor thread that lagged let the listen queue overflow: the kernel
/// dropped those SYNs and each such connect waited a second for its retransmission, which made
/// a run's average swing between 70 µs and 2 ms.)
fn connect_loop(n: u64) {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| die(&format!("listen: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| die(&e.to_string()));
    let t = now_ns();
    for _ in 0..n {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect: {e}")));
        // Close with a reset: no TIME_WAIT, so repeated runs do not exhaust local ports.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd and a pointer to a local linger struct of that size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        // The handshake is complete: the connection waits in the queue, and accept takes it.
        drop(
            listener
                .accept()
                .unwrap_or_else(|e| die(&format!("accept: {e}"))),
        );
        drop(s);
    }
    report(n, now_ns() - t, "");
}

/// N DNS queries (A, `qI.bench.test`) to RESOLVER_IP:53, each answer awaited (1 s timeout).
fn dns_loop(n: u64, resolver: &str) {
    let ip: Ipv4Addr = resolver
        .parse()
        .unwrap_or_else(|_| die("RESOLVER_IP must be an IPv4 address"));
    if !ip.is_loopback() {
        die("the resolver must be on loopback");
    }
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| die(&format!("bind: {e}")));
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap_or_else(|e| die(&e.to_string()));
    let server = SocketAddrV4::new(ip, 53);
    let mut answered = 0u64;
    let mut buf = [0u8; 512];
    let t = now_ns();
    for i in 0..n {
        let id = (i & 0xffff) as u16;
        sock.send_to(&query(id, &format!("q{i}.bench.test")), server)
            .unwrap_or_else(|e| die(&format!("sendto: {e}")));
        // Skip stale answers to earlier (timed-out) ids.
        while let Ok(len) = sock.recv(&mut buf) {
            if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                answered += 1;
                break;
            }
        }
    }
    report(n, now_ns() - t, &format!(",\"answered\":{answered}"));
}

/// A standard recursive query for `name` (A, IN).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// PROCS processes, each opening PATH at RATE/PROCS per second for SECS seconds (0 = as fast
/// as it can). Prints the total opens and the time taken.
fn rate(procs: u64, rate: u64, secs: u64, path: &CString) {
    let procs = procs.max(1);
    let per_proc = rate / procs;
    let t = now_ns();
    let mut children = Vec::new();
    for _ in 0..procs {
        let (r, mut w) = pipe();
        // SAFETY: the child runs only the loop below and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            die("fork failed");
        }
        if pid == 0 {
            let n = paced_opens(per_proc, secs, path);
            let _ = w.write_all(&n.to_le_bytes());
            unsafe { libc::_exit(0) };
        }
        drop(w);
        children.push((pid, r));
    }
    let mut total = 0u64;
    for (pid, mut r) in children {
        let mut b = [0u8; 8];
        if r.read_exact(&mut b).is_ok() {
            total += u64::from_le_bytes(b);
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    report(total, now_ns() - t, "");
}

fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        die("pipe failed");
    }
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// Open+close PATH at `rate` per second (0: unpaced) for `secs`; returns the count.
fn paced_opens(rate: u64, secs: u64, path: &CString) -> u64 {
    const BATCH: u64 = 500;
    let start = now_ns();
    let end = start + secs * 1_000_000_000;
    let mut n = 0u64;
    loop {
        for _ in 0..BATCH {
            // The path need not exist: a failed open is an event too, and cheaper to make.
            // SAFETY: a NUL-terminated path; a returned fd is ours to close.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
        }
        n += BATCH;
        let now = now_ns();
        if now >= end {
            return n;
        }
        // Where the schedule says we should be; sleep off any lead.
        if let Some(due) = (n * 1_000_000_000).checked_div(rate).map(|d| start + d)
            && due > now
        {
            std::thread::sleep(Duration::from_nanos((due - now).min(end - now)));
        }
    }
}

/// N opens of DIR/hI/.aws/credentials, INTERVAL_MS apart; before each, a line `open I T_NS`
/// (CLOCK_MONOTONIC) on stdout, flushed, so the bench can time open → finding.
fn latency(n: u64, interval_ms: u64, dir: &str) {
    let out = std::io::stdout();
    for i in 0..n {
        let path = cstr(&format!("{dir}/h{i}/.aws/credentials"));
        {
            let mut o = out.lock();
            let _ = writeln!(o, "open {i} {}", now_ns());
            let _ = o.flush();
        }
        open_close(&path);
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}
