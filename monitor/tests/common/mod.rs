//! What the monitor crate's own root tests share.

/// true when this test can run (root). Locally without root: skip (false). Under CI=true:
/// panic, because these tests must run there.
pub fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI=true but not root: root tests must run"
    );
    eprintln!("skipping: needs root");
    false
}
