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
            let me = std::fs::read_link("/proc/self/exe").expect("own exe");
            for _ in 0..1000 {
                match std::fs::read_link(format!("/proc/{}/exe", child.id())) {
                    Ok(exe) if exe != me => break,
                    _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
            println!("{}", child.id());
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
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bw-trigger open|open-rel|openat-dirfd|open-loop|connect|sendto|spawn|exec|exit|kill-self|straggler|wait-signal ..."
    );
    exit(2)
}
