//! Trigger program for the end-to-end tests: each subcommand makes exactly the syscalls a test
//! asserts on, so the expected events are known precisely.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    os::unix::process::CommandExt,
    process::{Command, exit},
};

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in argument")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match a(0) {
        // open(2)-family through an absolute path.
        "open" => {
            std::fs::File::open(a(1)).expect("open");
        }
        // chdir, then open a relative path.
        "open-rel" => {
            std::env::set_current_dir(a(1)).expect("chdir");
            std::fs::File::open(a(2)).expect("open relative");
        }
        // open a directory, then openat relative to that fd.
        "openat-dirfd" => unsafe {
            let dir = libc::open(cstr(a(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(dir >= 0, "open dir");
            let fd = libc::openat(dir, cstr(a(2)).as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0, "openat");
        },
        // The open syscall itself (glibc's open() calls openat), creating the file with a
        // mode: open(PATH, O_WRONLY|O_CREAT, 0640).
        "open-syscall" => unsafe {
            let flags = (libc::O_WRONLY | libc::O_CREAT) as libc::c_long;
            let fd = libc::syscall(
                libc::SYS_open,
                cstr(a(1)).as_ptr(),
                flags,
                0o640 as libc::c_long,
            );
            assert!(fd >= 0, "open syscall");
        },
        // openat with all four arguments: openat(open(DIR), NAME, O_RDWR|O_CREAT, 0604).
        "openat-syscall" => unsafe {
            let dir = libc::open(cstr(a(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(dir >= 0, "open dir");
            let flags = (libc::O_RDWR | libc::O_CREAT) as libc::c_long;
            let fd = libc::syscall(
                libc::SYS_openat,
                dir as libc::c_long,
                cstr(a(2)).as_ptr(),
                flags,
                0o604 as libc::c_long,
            );
            assert!(fd >= 0, "openat syscall");
        },
        // open(PATH) and read it through the 32-bit syscall entry (`int 0x80`, i386's open
        // = 5 and read = 3), which the kernel's syscall tracepoints do not show; prints what
        // it read.
        "int80-read" => unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED, "mmap below 4 GiB");
            let page = page.cast::<u8>();
            let path = a(1).as_bytes();
            assert!(path.len() < 1024, "path too long");
            std::ptr::copy_nonoverlapping(path.as_ptr(), page, path.len());
            *page.add(path.len()) = 0;
            // rbx cannot be named as an operand: swap the argument in and out.
            let int80 = |nr: u64, b: u64, c: u64, d: u64| -> i64 {
                let ret: u64;
                core::arch::asm!(
                    "xchg {b}, rbx",
                    "int 0x80",
                    "xchg {b}, rbx",
                    b = inout(reg) b => _,
                    inlateout("rax") nr => ret,
                    in("rcx") c,
                    in("rdx") d,
                );
                ret as u32 as i32 as i64
            };
            let fd = int80(5, page as u64, 0, 0);
            assert!(fd >= 0, "int 0x80 open: {fd}");
            let buf = page.add(1024);
            let n = int80(3, fd as u64, buf as u64, 1024);
            assert!(n >= 0, "int 0x80 read: {n}");
            let got = std::slice::from_raw_parts(buf, n as usize);
            println!("read: {}", String::from_utf8_lossy(got));
        },
        // syscall(-1): no such syscall (ENOSYS); how a ptrace tracer skips one.
        "nosys" => unsafe {
            let r = libc::syscall(-1 as libc::c_long);
            let err = std::io::Error::last_os_error().raw_os_error();
            assert_eq!((r, err), (-1, Some(libc::ENOSYS)), "syscall(-1)");
        },
        // open(DIR, O_DIRECTORY), fchdir to it, then open NAME relative to it.
        "fchdir-open" => unsafe {
            let dir = libc::open(cstr(a(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(dir >= 0, "open dir");
            assert_eq!(libc::fchdir(dir), 0, "fchdir");
            std::fs::File::open(a(2)).expect("open relative");
        },
        // N opens of one path (each closed again).
        "open-loop" => {
            let n: u64 = a(1).parse().expect("count");
            let path = cstr(a(2));
            for _ in 0..n {
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                assert!(fd >= 0, "open in loop");
                unsafe { libc::close(fd) };
            }
        }
        // N opens of missing paths DIR/<i>-xxx… of every length from 1 to 97 x's, ten at a
        // time with a millisecond between (slow enough for a small ring to keep up).
        "open-paced" => {
            let n: usize = a(1).parse().expect("count");
            for i in 0..n {
                let path = cstr(&format!("{}/{i}-{}", a(2), "x".repeat(1 + i % 97)));
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                assert!(fd < 0, "{i}: exists");
                if i % 10 == 9 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        // N threads one after another, each opening PATH once and exiting.
        "thread-opens" => {
            let n: u64 = a(1).parse().expect("count");
            let path = std::sync::Arc::new(cstr(a(2)));
            for _ in 0..n {
                let path = path.clone();
                std::thread::spawn(move || {
                    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                    assert!(fd >= 0, "open in thread");
                    unsafe { libc::close(fd) };
                })
                .join()
                .expect("thread");
            }
        }
        // TCP connect to ADDR (127.0.0.1:P or [::1]:P), say hello.
        "connect" => {
            let mut s = TcpStream::connect(a(1)).expect("connect");
            s.write_all(b"hello").expect("write");
            let mut buf = [0u8; 5];
            let _ = s.read(&mut buf);
        }
        // One UDP datagram to ADDR without connecting.
        "sendto" => {
            let bind = if a(1).starts_with('[') {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let s = UdpSocket::bind(bind).expect("bind");
            s.send_to(b"ping", a(1)).expect("sendto");
        }
        // Run the rest as a child, wait for it, exit with its status.
        "spawn" => {
            let status = Command::new(a(1)).args(&args[2..]).status().expect("spawn");
            exit(status.code().unwrap_or(1));
        }
        // Replace ourselves with another program.
        "exec" => {
            let err = Command::new(a(1)).args(&args[2..]).exec();
            panic!("exec failed: {err}");
        }
        "exit" => exit(a(1).parse().expect("code")),
        "kill-self" => unsafe {
            libc::kill(libc::getpid(), a(1).parse().expect("signal"));
            libc::pause();
        },
        // Leave a background process running, then exit at once.
        #[expect(
            clippy::zombie_processes,
            reason = "leaving the child behind is the point"
        )]
        "straggler" => {
            let child = Command::new("sleep")
                .arg(a(1))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn sleep");
            // Exit only once the child runs `sleep`, so the test knows what it left behind.
            wait_until_execed(child.id() as i32);
            println!("{}", child.id());
        }
        // From outside a run: wait for "go" on stdin, join the run's cgroup (write 0 to its
        // cgroup.procs, given as the first argument), open the second argument (a relative
        // path, resolved against our own cwd), stay a second (buildwatch reads what it does
        // not see happen from /proc while the process lives), exit. Anything else on stdin:
        // exit at once.
        "join-open" => {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            if line.trim() != "go" {
                exit(3);
            }
            std::fs::write(a(1), b"0").expect("join the cgroup");
            std::fs::File::open(a(2)).expect("open");
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        // Wait for a signal, print which, exit 0.
        "wait-signal" => unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            std::fs::write(a(1), b"ready").expect("write ready file");
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            println!("got signal {sig}");
        },
        // Read the ELF magic at the start of PID's first mapping with process_vm_readv, then
        // attach with ptrace and detach again. Prints the bytes read.
        "peek" => {
            let pid: i32 = a(1).parse().expect("pid");
            println!("{}", peek(pid));
            attach_detach(pid, libc::PTRACE_ATTACH);
        }
        // The same on a child of our own (a debugger's normal business): seize, read, kill.
        "peek-child" => {
            let mut child = Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id() as i32;
            wait_until_execed(pid);
            attach_detach(pid, libc::PTRACE_SEIZE);
            println!("{}", peek(pid));
            child.kill().expect("kill child");
            child.wait().expect("wait child");
        }
        // What root in the run would do to hide a loss: find every loaded map called NAME
        // through bpf(2) and write zeros into its entry 0. Prints one line per map found,
        // `NAME refused ERRNO` or `NAME written`; exits 3 if any write went through.
        "zero-map" => {
            let mut written = false;
            for (fd, value_size) in maps_named(a(1)) {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) * 2;
                let value = vec![0u8; value_size as usize * cpus];
                match bpf_update(fd, 0, &value) {
                    Ok(()) => {
                        written = true;
                        println!("{} written", a(1));
                    }
                    Err(e) => println!("{} refused {}", a(1), e.raw_os_error().unwrap_or(0)),
                }
            }
            if written {
                exit(3);
            }
        }
        // A forged DNS response, sent by the run to itself with no query before it: from
        // 127.0.0.79:53 to a client socket, naming NAME → ADDR (loopback); then a TCP connect
        // to ADDR:PORT, which the forged answer would pass off as NAME.
        "dns-forge" => {
            let (name, addr, port) = (a(1), a(2), a(3));
            let ip: std::net::Ipv4Addr = addr.parse().expect("IPv4 answer");
            let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
            let forger = UdpSocket::bind("127.0.0.79:53").expect("bind 127.0.0.79:53 (root)");
            let mut msg = vec![0x42, 0x42, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            for label in name.split('.') {
                msg.push(label.len() as u8);
                msg.extend_from_slice(label.as_bytes());
            }
            msg.extend_from_slice(&[0, 0, 1, 0, 1]);
            msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            msg.extend_from_slice(&ip.octets());
            forger
                .send_to(&msg, client.local_addr().expect("client address"))
                .expect("send forged response");
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let mut buf = [0u8; 512];
            let n = client.recv(&mut buf).expect("forged response arrives");
            assert_eq!(n, msg.len());
            let dest = std::net::SocketAddr::from((ip, port.parse::<u16>().expect("port")));
            let _ = TcpStream::connect_timeout(&dest, std::time::Duration::from_secs(1));
        }
        // The connect race: a blocking connect to REAL (a loopback listener whose accept
        // queue is full, so the SYN goes unanswered for a second) while a second thread
        // rewrites the caller's sockaddr to DECOY:PORT. The kernel connects to REAL; a
        // monitor that re-reads the caller's memory would report DECOY.
        "connect-race" => unsafe {
            let real: std::net::Ipv4Addr = a(1).parse().expect("REAL");
            let decoy: std::net::Ipv4Addr = a(2).parse().expect("DECOY");
            let decoy_port: u16 = a(3).parse().expect("PORT");
            let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                sin_zero: [0; 8],
            };
            let len = size_of::<libc::sockaddr_in>() as u32;
            let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut at = sin(real, 0);
            assert_eq!(libc::bind(l, (&raw const at).cast(), len), 0, "bind");
            assert_eq!(libc::listen(l, 0), 0, "listen");
            let mut alen = len;
            libc::getsockname(l, (&raw mut at).cast(), &mut alen);
            // Fill the accept queue (never accepted).
            for _ in 0..2 {
                let f = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                libc::connect(f, (&raw const at).cast(), len);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            static mut BUF: libc::sockaddr_in = libc::sockaddr_in {
                sin_family: 0,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: 0 },
                sin_zero: [0; 8],
            };
            BUF = at;
            let rewrite = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                std::ptr::write_volatile(&raw mut BUF, sin(decoy, decoy_port));
            });
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let timeout = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as u32,
            );
            let r = libc::connect(s, (&raw const BUF).cast(), len);
            let err = std::io::Error::last_os_error();
            rewrite.join().expect("rewriter");
            println!("connect {r} {err}");
        },
        // Fileless execution: /bin/true copied into a memfd named NAME and run through its
        // descriptor (fexecve = execveat(fd, "", AT_EMPTY_PATH)).
        "memfd-exec" => unsafe {
            let name = cstr(a(1));
            let fd = libc::memfd_create(name.as_ptr(), 0);
            assert!(fd >= 0, "memfd_create");
            let bytes = std::fs::read("/bin/true").expect("read /bin/true");
            assert_eq!(
                libc::write(fd, bytes.as_ptr().cast(), bytes.len()),
                bytes.len() as isize
            );
            fexecve(fd, &["true", "from-memfd"]);
        },
        // A deleted file run through its descriptor: PATH (a copy of /bin/true) is opened,
        // unlinked, then executed.
        "deleted-exec" => unsafe {
            let path = a(1);
            std::fs::copy("/bin/true", path).expect("copy /bin/true");
            let c = cstr(path);
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0, "open");
            std::fs::remove_file(path).expect("unlink");
            fexecve(fd, &["true", "from-deleted"]);
        },
        // execve with argv strings in pages this process never touched (a private mapping of
        // FILE, which holds "/bin/true\0cold-arg\0"): not resident at the syscall's entry.
        "exec-cold-argv" => unsafe {
            let c = cstr(a(1));
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0, "open");
            let len = std::fs::metadata(a(1)).expect("stat").len() as usize;
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED, "mmap");
            let base = base as *const libc::c_char;
            let argv = [base, base.add("/bin/true\0".len()), std::ptr::null()];
            let env: [*const libc::c_char; 1] = [std::ptr::null()];
            libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), env.as_ptr());
            panic!("execve: {}", std::io::Error::last_os_error());
        },
        // Names made without opening: rename(FROM, TO) with renameat2, then link(TO, LINK) and
        // symlinkat(TARGET, AT_FDCWD, SYMLINK), by raw syscalls.
        "relink" => unsafe {
            let (from, to, link, target, symlink) =
                (cstr(a(1)), cstr(a(2)), cstr(a(3)), cstr(a(4)), cstr(a(5)));
            let r = libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                0,
            );
            assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
            let r = libc::syscall(libc::SYS_link, to.as_ptr(), link.as_ptr());
            assert_eq!(r, 0, "link: {}", std::io::Error::last_os_error());
            let r = libc::symlinkat(target.as_ptr(), libc::AT_FDCWD, symlink.as_ptr());
            assert_eq!(r, 0, "symlinkat: {}", std::io::Error::last_os_error());
        },
        // A child made directly in another cgroup: clone3 with CLONE_INTO_CGROUP and a
        // read-only fd of CGROUP_DIR (no write to any cgroup file). The child reads READ, then
        // writes MARKER; prints how the child ended.
        "clone-into-cgroup" => unsafe {
            let dir = cstr(a(1));
            let (read, marker) = (cstr(a(2)), cstr(a(3)));
            let cg = libc::open(
                dir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            assert!(
                cg >= 0,
                "open cgroup dir: {}",
                std::io::Error::last_os_error()
            );
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
            // stack_size, tls, set_tid, set_tid_size, cgroup.
            let mut args = [0u64; 11];
            args[0] = 0x2_0000_0000; // CLONE_INTO_CGROUP
            args[4] = libc::SIGCHLD as u64;
            args[10] = cg as u64;
            let pid = libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), size_of_val(&args));
            if pid == 0 {
                let fd = libc::open(read.as_ptr(), libc::O_RDONLY);
                libc::close(fd);
                let fd = libc::open(marker.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::close(fd);
                libc::_exit(0);
            }
            assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
            let mut status = 0;
            libc::waitpid(pid as i32, &mut status, 0);
            println!(
                "child {}",
                if libc::WIFSIGNALED(status) {
                    format!("signal {}", libc::WTERMSIG(status))
                } else {
                    format!("exit {}", libc::WEXITSTATUS(status))
                }
            );
        },
        // name_to_handle_at(PATH), then open_by_handle_at with a descriptor of `/`: the file
        // opened with no path in the call. Prints the fd.
        "open-by-handle" => unsafe {
            let path = cstr(a(1));
            // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; }
            let mut handle = [0u8; 8 + 128];
            handle[..4].copy_from_slice(&128u32.to_ne_bytes());
            let mut mount_id: i32 = 0;
            let r = libc::syscall(
                libc::SYS_name_to_handle_at,
                libc::AT_FDCWD,
                path.as_ptr(),
                handle.as_mut_ptr(),
                &raw mut mount_id,
                0,
            );
            assert_eq!(
                r,
                0,
                "name_to_handle_at: {}",
                std::io::Error::last_os_error()
            );
            let root = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            let fd = libc::syscall(
                libc::SYS_open_by_handle_at,
                root,
                handle.as_mut_ptr(),
                libc::O_RDONLY,
            );
            println!("by-handle {fd}");
            assert!(
                fd >= 0,
                "open_by_handle_at: {}",
                std::io::Error::last_os_error()
            );
            // Keep it open while buildwatch looks the path up in /proc.
            std::thread::sleep(std::time::Duration::from_millis(500));
        },
        // An open through io_uring (IORING_OP_OPENAT, raw setup: no liburing), no open(2).
        // Prints the completion's result (the fd, or -errno).
        "uring-open" => unsafe {
            let path = cstr(a(1));
            println!("uring-open {}", uring_openat(&path));
        },
        // A packet socket, a raw UDP socket, and ordinary TCP and netlink sockets (not
        // reported).
        "raw-sockets" => unsafe {
            let packet = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300);
            let raw = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP);
            let tcp = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            let netlink = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0);
            println!("packet {packet} raw {raw} tcp {tcp} netlink {netlink}");
        },
        // The same through io_uring (IORING_OP_SOCKET), no socket(2): a raw ICMPv6 socket, and
        // an ordinary UDP one (not reported).
        "uring-raw-socket" => unsafe {
            let raw = uring_socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
            let udp = uring_socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            println!("raw {raw} udp {udp}");
        },
        // A TCP connect through io_uring (IORING_OP_CONNECT), no connect(2). Prints the
        // completion's result.
        "uring-connect" => unsafe {
            let to = sockaddr_v4(a(1), a(2));
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            println!("uring-connect {}", uring_connect(s, &to));
        },
        // A TCP socket that listens without bind(2): the kernel picks its port (autobind), and
        // no bind hook runs. Prints listen's result and the port; listens for a moment.
        "listen-autobind" => unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = libc::listen(s, 1);
            println!("listen {r} port {}", local_port(s));
            std::thread::sleep(std::time::Duration::from_millis(300));
        },
        // The same through io_uring (IORING_OP_LISTEN, since 6.11): no listen(2) either.
        "uring-listen" => unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = uring_listen(s, 1);
            println!("uring-listen {r} port {}", local_port(s));
            std::thread::sleep(std::time::Duration::from_millis(300));
        },
        // A rename, symlink or unlink through io_uring (IORING_OP_RENAMEAT, IORING_OP_SYMLINKAT,
        // IORING_OP_UNLINKAT): no syscall of the family. Prints the completion's result.
        "uring-rename" | "uring-symlink" => unsafe {
            let (from, to) = (cstr(a(1)), cstr(a(2)));
            let op: u8 = if a(0) == "uring-rename" { 35 } else { 38 };
            let r = uring_one(|sqe| {
                *sqe = op;
                *(sqe.add(4) as *mut i32) = libc::AT_FDCWD;
                *(sqe.add(16) as *mut u64) = from.as_ptr() as u64;
                *(sqe.add(8) as *mut u64) = to.as_ptr() as u64;
                // renameat's new dfd; symlinkat takes none (len must be 0).
                if op == 35 {
                    *(sqe.add(24) as *mut u32) = libc::AT_FDCWD as u32;
                }
            });
            println!("{} {r}", a(0));
        },
        "uring-unlink" => unsafe {
            let path = cstr(a(1));
            let r = uring_one(|sqe| {
                *sqe = 36;
                *(sqe.add(4) as *mut i32) = libc::AT_FDCWD;
                *(sqe.add(16) as *mut u64) = path.as_ptr() as u64;
            });
            println!("uring-unlink {r}");
        },
        // An extended attribute set through io_uring (IORING_OP_SETXATTR on a path,
        // IORING_OP_FSETXATTR on a descriptor): no setxattr syscall. security.capability gets a
        // valid v2 value (cap_net_raw permitted), anything else one byte. Prints the result.
        "uring-setxattr" | "uring-fsetxattr" => unsafe {
            let (path, name) = (cstr(a(1)), cstr(a(2)));
            let value: Vec<u8> = if a(2) == "security.capability" {
                // vfs_cap_data: magic_etc (VFS_CAP_REVISION_2), then {permitted, inheritable}
                // for the low and high 32 capabilities.
                [0x0200_0000u32, 1 << 13, 0, 0, 0]
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect()
            } else {
                b"x".to_vec()
            };
            let by_fd = a(0) == "uring-fsetxattr";
            let fd = if by_fd {
                libc::open(path.as_ptr(), libc::O_RDONLY)
            } else {
                -1
            };
            let r = uring_one(|sqe| {
                *sqe = if by_fd { 41 } else { 42 };
                *(sqe.add(4) as *mut i32) = fd;
                *(sqe.add(16) as *mut u64) = name.as_ptr() as u64;
                *(sqe.add(8) as *mut u64) = value.as_ptr() as u64;
                *(sqe.add(24) as *mut u32) = value.len() as u32;
                if !by_fd {
                    *(sqe.add(48) as *mut u64) = path.as_ptr() as u64;
                }
            });
            println!("{} {r}", a(0));
        },
        // A file emptied through io_uring (IORING_OP_FTRUNCATE, since 6.9): no truncate or
        // ftruncate syscall, and an open without O_TRUNC. `uring-ftruncate-fixed` names the
        // file as the ring's registered file 0 (IOSQE_FIXED_FILE), not by its descriptor.
        "uring-ftruncate" | "uring-ftruncate-fixed" => unsafe {
            let path = cstr(a(1));
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
            let fixed = a(0) == "uring-ftruncate-fixed";
            let r = uring_one_with(
                |ring| {
                    if fixed {
                        // IORING_REGISTER_FILES
                        let r = libc::syscall(
                            libc::SYS_io_uring_register,
                            ring,
                            2u32,
                            &raw const fd,
                            1u32,
                        );
                        assert_eq!(r, 0, "register: {}", std::io::Error::last_os_error());
                    }
                },
                |sqe| {
                    *sqe = 55;
                    if fixed {
                        // IOSQE_FIXED_FILE, registered file 0
                        *sqe.add(1) = 1;
                    } else {
                        *(sqe.add(4) as *mut i32) = fd;
                    }
                },
            );
            println!("{} {r}", a(0));
        },
        // TCP Fast Open: a connection made by sendto(MSG_FASTOPEN), with no connect(2).
        "tfo" => unsafe {
            let to = sockaddr_v4(a(1), a(2));
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let n = libc::sendto(
                s,
                b"x".as_ptr().cast(),
                1,
                libc::MSG_FASTOPEN,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            println!("sendto {n} {}", std::io::Error::last_os_error());
        },
        _ => usage(),
    }
}

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct UringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// IP:PORT (from the command line) as a sockaddr_in.
fn sockaddr_v4(ip: &str, port: &str) -> libc::sockaddr_in {
    let ip: std::net::Ipv4Addr = ip.parse().expect("IP");
    let port: u16 = port.parse().expect("PORT");
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// One IORING_OP_OPENAT of `path` (read-only) through a ring of our own; the completion's res.
unsafe fn uring_openat(path: &CString) -> i32 {
    // The SQE: opcode, fd (dirfd), addr (path), open_flags.
    unsafe {
        uring_one(|sqe| {
            *sqe = 18;
            *(sqe.add(4) as *mut i32) = libc::AT_FDCWD;
            *(sqe.add(16) as *mut u64) = path.as_ptr() as u64;
            *(sqe.add(28) as *mut u32) = libc::O_RDONLY as u32;
        })
    }
}

/// One IORING_OP_SOCKET (since 5.19): no socket(2). The completion's res (the fd, or -errno).
unsafe fn uring_socket(domain: i32, sock_type: i32, protocol: i32) -> i32 {
    // The SQE: opcode, fd (domain), off (type), len (protocol).
    unsafe {
        uring_one(|sqe| {
            *sqe = 45;
            *(sqe.add(4) as *mut i32) = domain;
            *(sqe.add(8) as *mut u64) = sock_type as u64;
            *(sqe.add(24) as *mut u32) = protocol as u32;
        })
    }
}

/// One IORING_OP_CONNECT of socket `fd` to `addr`: no connect(2). The completion's res.
unsafe fn uring_connect(fd: i32, addr: &libc::sockaddr_in) -> i32 {
    // The SQE: opcode, fd, addr (the sockaddr), off (its length).
    unsafe {
        uring_one(|sqe| {
            *sqe = 16;
            *(sqe.add(4) as *mut i32) = fd;
            *(sqe.add(16) as *mut u64) = (addr as *const libc::sockaddr_in) as u64;
            *(sqe.add(8) as *mut u64) = size_of::<libc::sockaddr_in>() as u64;
        })
    }
}

/// One IORING_OP_LISTEN of socket `fd`: no listen(2). The completion's res.
unsafe fn uring_listen(fd: i32, backlog: u32) -> i32 {
    // The SQE: opcode, fd, len (the backlog).
    unsafe {
        uring_one(|sqe| {
            *sqe = 57;
            *(sqe.add(4) as *mut i32) = fd;
            *(sqe.add(24) as *mut u32) = backlog;
        })
    }
}

/// The local port of socket `fd` (0 when it has none).
unsafe fn local_port(fd: i32) -> u16 {
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as u32;
    if unsafe { libc::getsockname(fd, (&raw mut a).cast(), &mut len) } != 0 {
        return 0;
    }
    u16::from_be(a.sin_port)
}

/// Submit one request, filled in by `fill` on a zeroed 64-byte SQE, through a ring of our own
/// (raw setup: no liburing), and wait for its completion; its res.
unsafe fn uring_one(fill: impl FnOnce(*mut u8)) -> i32 {
    unsafe { uring_one_with(|_| {}, fill) }
}

/// [`uring_one`], with `setup` given the ring's fd first (to register files).
unsafe fn uring_one_with(setup: impl FnOnce(i32), fill: impl FnOnce(*mut u8)) -> i32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let mut p = UringParams::default();
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &raw mut p) } as i32;
    assert!(
        fd >= 0,
        "io_uring_setup: {}",
        std::io::Error::last_os_error()
    );
    // One mapping holds both rings (IORING_FEAT_SINGLE_MMAP, since 5.4).
    let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * 16;
    let map = |len: usize, off: i64| unsafe {
        let m = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        );
        assert_ne!(
            m,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        m as *mut u8
    };
    setup(fd);
    let ring = map(sq_len.max(cq_len), 0);
    let sqes = map(p.sq_entries as usize * 64, 0x1000_0000);
    unsafe {
        std::ptr::write_bytes(sqes, 0, 64);
        fill(sqes);
        // user_data
        *(sqes.add(32) as *mut u64) = 1;
        let mask = *(ring.add(p.sq_off.ring_mask as usize) as *const u32);
        let tail = &*(ring.add(p.sq_off.tail as usize) as *const AtomicU32);
        let t = tail.load(Ordering::Acquire);
        *(ring.add(p.sq_off.array as usize) as *mut u32).add((t & mask) as usize) = 0;
        tail.store(t + 1, Ordering::Release);
        let r = libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            1u32,
            1u32,
            1u32,
            std::ptr::null::<u8>(),
            0usize,
        );
        assert_eq!(r, 1, "io_uring_enter: {}", std::io::Error::last_os_error());
        let head = *(ring.add(p.cq_off.head as usize) as *const u32);
        let cmask = *(ring.add(p.cq_off.ring_mask as usize) as *const u32);
        let cqe = ring.add(p.cq_off.cqes as usize + (head & cmask) as usize * 16);
        *(cqe.add(8) as *const i32)
    }
}

/// execveat(fd, "", argv, {}, AT_EMPTY_PATH); does not return.
unsafe fn fexecve(fd: i32, args: &[&str]) -> ! {
    let args: Vec<CString> = args.iter().map(|a| cstr(a)).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    panic!("execveat: {}", std::io::Error::last_os_error());
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<i64> {
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// (fd, value size) of every loaded map named `name`.
fn maps_named(name: &str) -> Vec<(i32, u32)> {
    const MAP_GET_FD_BY_ID: libc::c_long = 14;
    const OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const MAP_GET_NEXT_ID: libc::c_long = 12;
    let mut found = Vec::new();
    let mut id = 0u32;
    for _ in 0..100_000 {
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        if bpf(MAP_GET_NEXT_ID, &mut attr).is_err() {
            break;
        }
        id = (attr[0] >> 32) as u32;
        let mut attr = [0u64; 16];
        attr[0] = id as u64;
        let Ok(fd) = bpf(MAP_GET_FD_BY_ID, &mut attr) else {
            continue;
        };
        // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags,
        // name[16], ...
        let mut info = [0u8; 96];
        let mut attr = [0u64; 16];
        attr[0] = fd as u64 | (info.len() as u64) << 32;
        attr[1] = info.as_mut_ptr() as u64;
        if bpf(OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
            continue;
        }
        let map_name = &info[24..40];
        let map_name = &map_name[..map_name.iter().position(|&c| c == 0).unwrap_or(16)];
        if map_name == name.as_bytes() {
            let value_size = u32::from_ne_bytes(info[12..16].try_into().unwrap());
            found.push((fd as i32, value_size));
        }
    }
    found
}

fn bpf_update(fd: i32, key: u32, value: &[u8]) -> std::io::Result<()> {
    const MAP_UPDATE_ELEM: libc::c_long = 2;
    let mut attr = [0u64; 16];
    attr[0] = fd as u64;
    attr[1] = &raw const key as u64;
    attr[2] = value.as_ptr() as u64;
    bpf(MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// The first 4 bytes of PID's first mapping (its executable's ELF header), as hex.
fn peek(pid: i32) -> String {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let start = maps
        .split('-')
        .next()
        .and_then(|a| usize::from_str_radix(a, 16).ok())
        .expect("first mapping");
    let mut buf = [0u8; 4];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: start as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    assert_eq!(
        n,
        4,
        "process_vm_readv: {}",
        std::io::Error::last_os_error()
    );
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// PTRACE_ATTACH (waiting for the stop) or PTRACE_SEIZE, then PTRACE_DETACH.
fn attach_detach(pid: i32, request: libc::c_uint) {
    let null = std::ptr::null_mut::<libc::c_void>();
    unsafe {
        assert_eq!(
            libc::ptrace(request, pid, null, null),
            0,
            "ptrace: {}",
            std::io::Error::last_os_error()
        );
        if request == libc::PTRACE_ATTACH {
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, libc::__WALL), pid);
        }
        libc::ptrace(libc::PTRACE_DETACH, pid, null, null);
    }
}

/// Wait (bounded) until a freshly spawned child runs its new program.
/// Wait until `pid` runs a new program and its image is mapped: /proc/PID/exe changes early
/// in exec, before the ELF is mapped, so also wait for the first mapping to be the new exe.
fn wait_until_execed(pid: i32) {
    let me = std::fs::read_link("/proc/self/exe").expect("own exe");
    for _ in 0..1000 {
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
            && exe != me
            && std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .ok()
                .and_then(|m| {
                    m.lines()
                        .next()
                        .map(|l| l.ends_with(&*exe.to_string_lossy()))
                })
                .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("child {pid} never exec'd");
}

fn usage() -> ! {
    eprintln!(
        "usage: bw-trigger open|open-rel|openat-dirfd|open-loop|connect|sendto|spawn|exec|exit|kill-self|straggler|join-open|wait-signal|peek|peek-child|zero-map|dns-forge|connect-race|tfo|raw-sockets|memfd-exec|deleted-exec|exec-cold-argv|relink|uring-open|uring-raw-socket|uring-connect|uring-setxattr|uring-fsetxattr|uring-ftruncate|uring-ftruncate-fixed|clone-into-cgroup|open-by-handle ..."
    );
    exit(2)
}
