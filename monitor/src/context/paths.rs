//! Lexical path resolution: turns the path a syscall was given plus the directory it was
//! relative to (cwd or a dirfd) into an absolute path. Symlinks are resolved separately
//! (`proctable` records the canonical target next to the lexical path).

/// Join `path` onto the absolute directory `base` (ignored when `path` is absolute) and
/// normalise: repeated slashes, `.` and `..` are removed; `..` at the root stays at the root,
/// as the kernel does.
pub fn resolve(base: &[u8], path: &[u8]) -> Vec<u8> {
    // Most paths are absolute and normal already: taken as they are.
    if is_normal_absolute(path) {
        return path.to_vec();
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(16);
    let joined = if path.first() == Some(&b'/') {
        [path, b""]
    } else {
        [base, path]
    };
    for piece in joined {
        for comp in piece.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
    }
    let mut out = Vec::with_capacity(path.len() + base.len() + 1);
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `/`, or `/` followed by components separated by single slashes, none of them `.` or `..`,
/// with no slash at the end: what [`resolve`] would return unchanged.
fn is_normal_absolute(path: &[u8]) -> bool {
    if path == b"/" {
        return true;
    }
    path.first() == Some(&b'/')
        && path[1..]
            .split(|&b| b == b'/')
            .all(|c| !matches!(c, b"" | b"." | b".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, path: &str) -> String {
        String::from_utf8(resolve(base.as_bytes(), path.as_bytes())).unwrap()
    }

    #[test]
    fn absolute_and_relative() {
        assert_eq!(r("/home/u", "/etc/passwd"), "/etc/passwd");
        assert_eq!(r("/home/u", ".aws/credentials"), "/home/u/.aws/credentials");
        assert_eq!(r("/home/u/", "./x"), "/home/u/x");
        assert_eq!(r("/", "x"), "/x");
    }

    #[test]
    fn dots_and_slashes() {
        assert_eq!(r("/a/b", "../c"), "/a/c");
        assert_eq!(r("/a/b", "../../../../c"), "/c");
        assert_eq!(
            r("/", "////home//u/./.aws/../.aws/credentials"),
            "/home/u/.aws/credentials"
        );
        assert_eq!(r("/a", ".."), "/");
        assert_eq!(r("/a", ""), "/a");
        // Absolute paths the fast path must not take as they are.
        assert_eq!(r("/x", "/etc/"), "/etc");
        assert_eq!(r("/x", "/a/."), "/a");
        assert_eq!(r("/x", "/a/b/.."), "/a");
        assert_eq!(r("/x", "//a"), "/a");
        // ... and ones it may.
        assert_eq!(r("/x", "/a/..b/.c"), "/a/..b/.c");
        assert_eq!(r("/x", "/"), "/");
    }

    #[test]
    fn non_utf8_bytes_survive() {
        assert_eq!(resolve(b"/tmp/\xff", b"x\xfe"), b"/tmp/\xff/x\xfe".to_vec());
    }
}
