//! Assembles what a verdict is computed with: the default rules, the policy (`--policy FILE`
//! or `.buildwatch.yaml` in the working directory), extra rule files (`--rules`), and the
//! command-line overrides (`--allow`, `--fail-on`). Shared by `run` and `replay`.

use std::path::{Path, PathBuf};

use crate::{
    detect::rules::{self, Diagnostic, Level, RuleSet},
    policy::{self, Endpoint, FailOn, Policy},
};

#[derive(Clone, Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// Policy file (default: .buildwatch.yaml in the working directory, if present).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Add to the egress allowlist: ADDR[/PREFIX][:PORT] or DOMAIN[:PORT] (`*.` one label, `**.`
    /// any depth), IPv6 with a port as [ADDR]:PORT.
    /// Repeatable.
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    pub allow: Vec<Endpoint>,
    /// Extra rule file, loaded after the defaults and the policy. Repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
    /// Fail (exit status 86) when a finding reaches this severity: low, medium, high,
    /// critical, or never. Overrides the policy's `fail_on` (default high).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_fail_on)]
    pub fail_on: Option<FailOn>,
    /// Block mode: refuse egress outside the allowlist in the kernel (EPERM), for IPv4, IPv6
    /// and IPv4-mapped destinations, TCP, UDP, TCP Fast Open and io_uring. Address entries
    /// only for now. Same as the policy's `mode: block`.
    #[arg(long)]
    pub block: bool,
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::parse(s)
}

fn parse_fail_on(s: &str) -> Result<FailOn, String> {
    FailOn::parse(s).ok_or_else(|| format!("`{s}` is not low, medium, high, critical or never"))
}

pub struct Setup {
    pub rules: RuleSet,
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Load everything; on error, every diagnostic rendered, one per paragraph.
pub fn setup(args: &PolicyArgs, cwd: &Path) -> Result<Setup, String> {
    setup_in(args, Some(cwd), false)
}

/// [`setup`], with the default policy file looked for in `cwd` only when there is one (the
/// agent names its policy explicitly, or has none); `host`: the agent's host defaults
/// (rules/host.yaml) on top of the default rules.
pub fn setup_in(args: &PolicyArgs, cwd: Option<&Path>, host: bool) -> Result<Setup, String> {
    let mut docs = rules::default_docs();
    if host {
        docs.extend(rules::host_docs());
    }
    let policy_file = match (&args.policy, cwd) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(cwd)) => Some(cwd.join(policy::DEFAULT_FILE)).filter(|p| p.exists()),
        (None, None) => None,
    };
    let mut policy = Policy::default();
    let mut diags = Vec::new();
    if let Some(p) = &policy_file {
        match policy::load_file(p) {
            Ok(l) => {
                policy = l.policy;
                docs.extend(l.docs);
            }
            Err(d) => diags.extend(d),
        }
    }
    for f in &args.rule_files {
        match std::fs::read_to_string(f) {
            Ok(src) => {
                policy
                    .sources
                    .push(policy::Source::of("rules", f, src.as_bytes()));
                match rules::parse_doc(&f.display().to_string(), &src) {
                    Ok(d) => docs.push(d),
                    Err(d) => diags.push(d),
                }
            }
            Err(e) => {
                return Err(format!(
                    "buildwatch: {}: error: cannot read the rule file: {e}",
                    f.display()
                ));
            }
        }
    }
    if diags.is_empty() {
        let (set, d) = rules::load(&docs);
        diags.extend(d);
        if let Some(set) = set {
            policy.allow.extend(args.allow.iter().cloned());
            if let Some(f) = args.fail_on {
                policy.fail_on = f;
            }
            policy.block |= args.block;
            return Ok(Setup {
                rules: set,
                policy,
                warnings: diags,
            });
        }
    }
    let errors = diags.iter().filter(|d| d.level == Level::Error).count();
    // Each diagnostic starts with `buildwatch:`, as everything buildwatch says of itself does
    // (a build log mixes it with the build's own errors).
    let text: Vec<String> = diags.iter().map(|d| format!("buildwatch: {d}")).collect();
    Err(format!(
        "{}\nbuildwatch: {errors} error(s) in the rules or policy",
        text.join("\n\n")
    ))
}
