//! A rule's glob list, with a literal prefilter.
//!
//! Nearly every path a rule tests matches none of its globs. globset answers that by running
//! all its strategies, a regex set among them: 200–290 ns for a path of 40–60 bytes against
//! the 25 credential globs of `sensitive_file_globs`, on every open. Each glob here also has
//! a run of literal text that any path it matches contains (`.aws/credentials` of
//! `**/.aws/credentials`); one Aho-Corasick DFA over those runs rules out such a path in
//! 50–80 ns, and globset decides only for the rest.
//!
//! The prefilter may only say "no" when globset would: a run is taken only from the plain
//! characters of a glob, never from inside `[…]` or `{…}`, never across a wildcard, an
//! escape, or the `/` next to a `**` (which `**` may match away). A set with a glob that has
//! no such run has no prefilter.

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use globset::GlobSet;

#[derive(Clone, Debug)]
pub struct Globs {
    set: GlobSet,
    required: Option<AhoCorasick>,
}

impl Globs {
    /// `set` built from `globs` (as written, with `literal_separator` and
    /// `backslash_escape`).
    pub fn new(set: GlobSet, globs: &[&str]) -> Self {
        #[cfg(test)]
        BUILT.with_borrow_mut(|b| b.push(globs.iter().map(|g| g.to_string()).collect()));
        let runs: Option<Vec<String>> = globs.iter().map(|g| required_run(g)).collect();
        let required = runs.filter(|r| !r.is_empty()).and_then(|runs| {
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .build(runs)
                .ok()
        });
        Self { set, required }
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.required.as_ref().is_none_or(|ac| ac.is_match(path)) && self.set.is_match(path)
    }
}

#[cfg(test)]
thread_local! {
    /// Every glob list built on this thread (the tests read the default rules' lists).
    static BUILT: std::cell::RefCell<Vec<Vec<String>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The longest run of literal characters every match of `glob` contains, or None.
pub fn required_run(glob: &str) -> Option<String> {
    let b: Vec<char> = glob.chars().collect();
    let mut runs: Vec<String> = Vec::new();
    let mut run = String::new();
    let end_run = |run: &mut String, runs: &mut Vec<String>| {
        if !run.is_empty() {
            runs.push(std::mem::take(run));
        }
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            '*' => {
                end_run(&mut run, &mut runs);
                let star2 = b.get(i + 1) == Some(&'*');
                if star2 {
                    // `**` may match nothing, slashes around it included: drop the `/` just
                    // before it from the run that ended, and skip the one after it.
                    if let Some(last) = runs.last_mut()
                        && i > 0
                        && b[i - 1] == '/'
                    {
                        last.pop();
                        if last.is_empty() {
                            runs.pop();
                        }
                    }
                    i += 2;
                    if b.get(i) == Some(&'/') {
                        i += 1;
                    }
                    continue;
                }
            }
            '?' => end_run(&mut run, &mut runs),
            // An escaped character is literal, but it is simplest, and safe, to leave it out.
            '\\' => {
                end_run(&mut run, &mut runs);
                i += 1;
            }
            '[' => {
                end_run(&mut run, &mut runs);
                // `[!]…]`, `[]…]`: the first member may be `]`.
                let mut j = i + 1;
                if matches!(b.get(j), Some('!' | '^')) {
                    j += 1;
                }
                j += 1;
                while j < b.len() && b[j] != ']' {
                    j += 1;
                }
                if j >= b.len() {
                    return None;
                }
                i = j;
            }
            '{' => {
                end_run(&mut run, &mut runs);
                let mut depth = 1;
                let mut j = i + 1;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        '\\' => j += 1,
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth > 0 {
                    return None;
                }
                i = j;
                continue;
            }
            ']' | '}' | ',' => end_run(&mut run, &mut runs),
            c => run.push(c),
        }
        i += 1;
    }
    end_run(&mut run, &mut runs);
    runs.into_iter().max_by_key(String::len)
}

#[cfg(test)]
mod tests {
    use globset::{GlobBuilder, GlobSetBuilder};

    use super::*;

    fn set(globs: &[&str]) -> Globs {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(
                GlobBuilder::new(g)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .unwrap(),
            );
        }
        Globs::new(b.build().unwrap(), globs)
    }

    #[test]
    fn runs_never_take_what_a_wildcard_may_match() {
        for (glob, run) in [
            ("**/.aws/credentials", Some(".aws/credentials")),
            ("**/.ssh/id_*", Some(".ssh/id_")),
            ("**/.config/gcloud/**", Some(".config/gcloud")),
            ("/etc/shadow", Some("/etc/shadow")),
            (
                "/var/run/secrets/kubernetes.io/**",
                Some("/var/run/secrets/kubernetes.io"),
            ),
            ("/tmp/*/x?y/**/z", Some("/tmp/")),
            ("**/a[bc]d/{long,longer}/**", Some("d/")),
            ("**/[]]xx/", Some("xx/")),
            ("**/[!]]yy", Some("yy")),
            ("**/\\*star/q", Some("star/q")),
            ("*", None),
            ("**", None),
            ("**/*", None),
            ("{a,b}", None),
            ("[ab", None),
            ("{a,b", None),
        ] {
            assert_eq!(required_run(glob).as_deref(), run, "{glob}");
        }
    }

    #[test]
    fn the_prefilter_agrees_with_globset() {
        // Every default rule's glob lists, and paths they match and do not.
        BUILT.with_borrow_mut(Vec::clear);
        let (rules, _) = crate::detect::rules::load(&crate::detect::rules::default_docs());
        assert!(rules.is_some());
        let lists = BUILT.with_borrow_mut(std::mem::take);
        assert!(lists.len() >= 10, "{lists:?}");
        let mut prefiltered = 0;
        for list in &lists {
            let globs: Vec<&str> = list.iter().map(String::as_str).collect();
            let s = set(&globs);
            prefiltered += usize::from(s.required.is_some());
            for g in &globs {
                // A path each glob matches: wildcards filled in.
                for fill in [("**", "a/b"), ("**", "c")] {
                    let path = g
                        .replace(fill.0, fill.1)
                        .replace('*', "x")
                        .replace('?', "q");
                    if path.contains(['[', '{', '\\']) {
                        continue;
                    }
                    for p in [
                        path.clone(),
                        format!("/home/u/{}", path.trim_start_matches('/')),
                    ] {
                        assert_eq!(s.is_match(&p), s.set.is_match(&p), "{g}: {p}");
                    }
                }
            }
            for p in [
                "/work/main/target/bench/work/does-not-exist",
                "/home/u/.aws/credentials",
                "/home/u/.ssh/id_ed25519",
                "/home/u/.ssh/id_ed25519.pub",
                "/etc/shadow",
                "/run/secrets/kubernetes.io/serviceaccount/token",
                "/usr/lib/node_modules/npm/bin/npm-cli.js",
                "/home/u/.bashrc",
                "/home/u/.config/autostart/x.desktop",
            ] {
                assert_eq!(s.is_match(p), s.set.is_match(p), "{globs:?}: {p}");
            }
        }
        assert!(
            prefiltered * 2 >= lists.len(),
            "{prefiltered} of {}",
            lists.len()
        );
        let creds = set(&["**/.aws/credentials", "**/.ssh/id_*", "/etc/shadow"]);
        assert!(creds.required.is_some());
        assert!(creds.is_match("/root/.aws/credentials"));
        assert!(creds.is_match(".aws/credentials"));
        assert!(creds.is_match("/root/.ssh/id_rsa"));
        assert!(!creds.is_match("/root/.ssh/known_hosts"));
        assert!(!creds.is_match("/etc/passwd"));
    }
}
