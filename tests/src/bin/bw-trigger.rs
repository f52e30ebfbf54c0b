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
        _ => usage(),
    }
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
        "usage: bw-trigger open|open-rel|openat-dirfd|open-loop|connect|sendto|spawn|exec|exit|kill-self|straggler|join-open|wait-signal|peek|peek-child ..."
    );
    exit(2)
}
