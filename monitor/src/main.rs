//! The `buildwatch` command line: parses arguments and hands over to the library's commands.

use std::{ffi::OsString, io::Write, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use monitor::{
    exit,
    kernel::loader,
    mode::{self, doctor, note, replay, rules_cmd, run},
    output::{Outputs, text},
    policy::config::{self, PolicyArgs},
};

#[derive(Parser)]
#[command(
    name = "buildwatch",
    version,
    about = "Watch what a build does (exec, files, network) and judge it against rules",
    override_usage = "buildwatch [OPTIONS] -- COMMAND [ARGS]...\n       buildwatch <SUBCOMMAND>",
    after_help = "`buildwatch [OPTIONS] -- COMMAND` is `buildwatch run [OPTIONS] -- COMMAND`.\n\n\
                  Exit status: the command's own status; 86 when findings reach --fail-on or \
                  the run cannot be vouched for; 64 for a usage error; 125 when buildwatch \
                  fails; 126/127 when the command cannot run / is not found.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunFlags,
    /// The command to watch, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command_line: Vec<OsString>,
}

/// Everything `run` takes but the command.
#[derive(Args, Clone, Debug)]
struct RunFlags {
    /// Write every event as JSON Lines to FILE (`-` for stdout: then only events go to
    /// stdout, and the command's own standard output goes to standard error).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Leave processes the command left running alive (moved out of the run) instead of
    /// killing them.
    #[arg(long)]
    keep_stragglers: bool,
    /// Let the command's processes make 32-bit syscalls (`int 0x80`, 32-bit binaries), which
    /// are otherwise refused (the process is killed: `syscall-32bit-killed`). The kernel's
    /// syscall tracepoints do not show them: what those calls open, rename or change goes
    /// unseen. The run record and every report say so.
    #[arg(long)]
    allow_32bit_syscalls: bool,
    /// Report every read-only open under the system directories (/usr/include, /usr/lib,
    /// /usr/share, /lib, …) as its own event. By default they are counted per process (the
    /// exit event's `reads_summarized`): no rule looks at them, and a compiler makes
    /// thousands.
    #[arg(long)]
    all_reads: bool,
    /// Run the command as USER (a name or uid; `root` keeps root). Default: the user who
    /// invoked sudo (SUDO_UID), with that user's groups and HOME; otherwise buildwatch's own.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = loader::DEFAULT_RING_BYTES,
          value_parser = parse_ring_size)]
    ring_size: u32,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    outputs: OutputArgs,
}

#[derive(Args, Clone, Debug, Default)]
struct OutputArgs {
    /// Write the JSON report (docs/report.md) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write findings as SARIF 2.1.0 to FILE.
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,
    /// Append a Markdown summary to FILE (default: $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE")]
    summary_md: Option<PathBuf>,
    /// Write GitLab's Code Quality report (findings at their manifest lines) to FILE.
    #[arg(long, value_name = "FILE")]
    codequality: Option<PathBuf>,
    /// The SARIF's category (runAutomationDetails.id; default `buildwatch`): give each job
    /// that uploads its own, so one does not close the other's alerts.
    #[arg(long, value_name = "NAME")]
    sarif_category: Option<String>,
    /// GitHub annotations for findings: auto (when GITHUB_ACTIONS=true), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto",
          value_parser = ["auto", "always", "never"])]
    annotations: String,
    /// Colour on the terminal: auto (a terminal or GitHub Actions, unless NO_COLOR is set),
    /// always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto",
          value_parser = ["auto", "always", "never"])]
    color: String,
    /// Forward findings and the run's summary to the outputs in FILE (YAML: an `outputs:`
    /// list as in the agent's configuration; docs/outputs.md), besides the policy's
    /// `outputs:`. Repeatable.
    #[arg(long = "output", value_name = "FILE")]
    forward: Vec<PathBuf>,
    /// Seconds the run waits at its end for its forwarding outputs to deliver (default 10,
    /// or the policy's `forward_wait_secs`); what is left waits in their spools.
    #[arg(long, value_name = "SECS")]
    forward_wait: Option<u64>,
    /// Write the smallest policy that would have allowed this run (its allowlist, each entry
    /// commented with the processes and packages that needed it) to FILE.
    #[arg(long, value_name = "FILE")]
    learn: Option<PathBuf>,
    /// Findings and the verdict only (no notices, no summary tables).
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also a line for every exec, connection and DNS query as it happens.
    #[arg(short, long)]
    verbose: bool,
}

impl OutputArgs {
    /// The terminal's look, from --color, -q and -v.
    fn style(&self) -> text::Style {
        use std::io::IsTerminal;
        text::Style {
            color: match self.color.as_str() {
                "always" => true,
                "never" => false,
                _ => text::color_auto(std::io::stderr().is_terminal()),
            },
            quiet: self.quiet,
            verbose: self.verbose,
        }
    }

    /// The outputs asked for; an `--output` file that does not parse is an error with its
    /// positions.
    fn outputs(self) -> Result<Outputs, String> {
        let mut forward = Vec::new();
        for f in &self.forward {
            forward.extend(monitor::output::forward::config::load_file(f)?);
        }
        Ok(Outputs {
            learn: self.learn,
            forward,
            forward_wait: self.forward_wait.map(std::time::Duration::from_secs),
            report: self.report,
            sarif: self.sarif,
            summary_md: self.summary_md.or_else(|| {
                std::env::var_os("GITHUB_STEP_SUMMARY")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            }),
            codequality: self.codequality,
            sarif_category: self.sarif_category,
            annotations: match self.annotations.as_str() {
                "always" => true,
                "never" => false,
                _ => std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true"),
            },
        })
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command, watch its whole process tree, report findings.
    Run {
        #[command(flatten)]
        flags: RunFlags,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<OsString>,
    },
    /// Evaluate a recorded event stream (`run --events FILE`) without root; `-` reads stdin.
    Replay {
        #[arg(value_name = "EVENTS")]
        events: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        outputs: OutputArgs,
    },
    /// What each package did in NEW that it did not do in BASELINE (two JSON reports):
    /// executables, destinations, sensitive files, persistence, process memory.
    Diff {
        #[arg(value_name = "BASELINE")]
        baseline: PathBuf,
        #[arg(value_name = "NEW")]
        new: PathBuf,
        /// text, markdown (a pull-request comment) or json.
        #[arg(long, default_value = "text", value_parser = ["text", "markdown", "json"])]
        format: String,
        /// Exit 86 when any package does something new.
        #[arg(long)]
        fail_on_new: bool,
    },
    /// Write the smallest policy that would have allowed a run, from its JSON report
    /// (`--report`): the allowlist, each entry commented with who needed it.
    Learn {
        #[arg(value_name = "REPORT")]
        report: PathBuf,
        /// Write it to FILE (default: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check or list rules.
    Rules {
        #[command(subcommand)]
        command: RulesCmd,
    },
    /// Check that this machine can run buildwatch, and say what is missing.
    Doctor,
    /// A fire drill: install benign "malicious" npm and pip packages (one attack technique
    /// each, against fake secrets and loopback) under buildwatch, and score each technique:
    /// caught or missed, the rule, the time to detect. Writes a Markdown scorecard
    /// (docs/drill.md). Exit status 0 when every technique was caught, 1 when one was not.
    Drill {
        /// A new or empty directory for the kit and the outputs (default: a new directory
        /// under the temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// npm or pip (default: each whose tool is installed).
        #[arg(long, value_parser = ["npm", "pip"])]
        ecosystem: Option<String>,
        /// Write the scorecard to FILE (default: DIR/scorecard.md).
        #[arg(long, value_name = "FILE")]
        scorecard: Option<PathBuf>,
        /// Policy file for the watched install (as `run --policy`).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Extra rule file for the watched install (as `run --rules`). Repeatable.
        #[arg(long, value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// Run the install as USER (as `run --user`).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Your install command, run in the drill's project directory (needs --ecosystem):
        /// e.g. `-- npm install`, or `-- pip install -r requirements.txt` (PIP_FIND_LINKS
        /// points at the drill's registry).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Watch the whole host (or the cgroups its configuration names) as a daemon.
    Agent {
        #[command(subcommand)]
        command: Option<AgentCmd>,
        /// The agent's configuration (docs/agent.md).
        #[arg(long, global = true, value_name = "FILE", default_value = mode::agent::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Where the running agent writes its pid (for `agent reload`).
        #[arg(long, global = true, value_name = "FILE", default_value = mode::agent::DEFAULT_PIDFILE)]
        pidfile: PathBuf,
        /// Kernel ring buffer size in bytes (a power of two, at least 4096).
        #[arg(long, value_name = "BYTES", default_value_t = loader::DEFAULT_RING_BYTES,
              value_parser = parse_ring_size)]
        ring_size: u32,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Check a configuration (and the rules and policy it names) without starting.
    Check {
        /// The configuration (default: --config's).
        file: Option<PathBuf>,
    },
    /// Make the running agent reload its configuration, rules and policy (SIGHUP).
    Reload,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Check rule files (with the defaults and the policy): every error and warning, positioned.
    Check {
        /// Rule files to check; none checks the defaults and the policy alone.
        files: Vec<PathBuf>,
        /// Policy file (default: .buildwatch.yaml in the working directory, if present).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Show the effective rules (defaults + policy + --rules files).
    List {
        #[command(flatten)]
        policy: PolicyArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the fields conditions can use.
    Fields,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if run::guardian::invoked(&args) {
        let code = run::guardian::main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(text::color_auto(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDWATCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .without_time()
        .with_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    let cmd = match cli.command {
        Some(cmd) => cmd,
        None if !cli.command_line.is_empty() => Cmd::Run {
            flags: cli.run,
            command: cli.command_line,
        },
        None => {
            let mut help = <Cli as clap::CommandFactory>::command();
            let _ = help.write_help(&mut std::io::stderr());
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let code = dispatch(cmd);
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn dispatch(cmd: Cmd) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note(&format!("cannot start: {e}"));
            return exit::INTERNAL;
        }
    };
    let setup = |p: &PolicyArgs| match config::setup(p, &cwd()) {
        Ok(s) => {
            for w in &s.warnings {
                let _ = writeln!(std::io::stderr(), "buildwatch: {w}");
            }
            Some(s)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            None
        }
    };
    match cmd {
        Cmd::Run { flags, command } => {
            text::set_style(flags.outputs.style());
            let preload = run::preload(flags.ring_size);
            let Some(analysis) = setup(&flags.policy) else {
                return exit::INTERNAL;
            };
            let mut outputs = match flags.outputs.outputs() {
                Ok(o) => o,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    return exit::INTERNAL;
                }
            };
            // The policy's outputs too (a replay forwards only what `--output` names).
            outputs
                .forward
                .extend(analysis.policy.outputs.iter().cloned());
            if outputs.forward_wait.is_none() {
                outputs.forward_wait = analysis.policy.forward_wait;
            }
            let opts = run::RunOptions {
                events: flags.events,
                keep_stragglers: flags.keep_stragglers,
                allow_32bit_syscalls: flags.allow_32bit_syscalls,
                all_reads: flags.all_reads,
                ring_bytes: flags.ring_size,
                preload,
                user: flags.user,
                command,
                analysis,
                outputs,
            };
            status_of(rt.block_on(run::run(opts)))
        }
        Cmd::Replay {
            events,
            policy,
            outputs,
        } => {
            text::set_style(outputs.style());
            let Some(analysis) = setup(&policy) else {
                return exit::INTERNAL;
            };
            match outputs.outputs() {
                Ok(o) => status_of(replay::replay(&events, analysis, &o)),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    exit::INTERNAL
                }
            }
        }
        Cmd::Rules { command } => match command {
            RulesCmd::Check { files, policy } => {
                rules_cmd::check(&files, policy.as_deref(), &cwd())
            }
            RulesCmd::List { policy, json } => match setup(&policy) {
                Some(s) => rules_cmd::list(&s, json),
                None => 1,
            },
            RulesCmd::Fields => rules_cmd::fields(),
        },
        Cmd::Doctor => rt.block_on(doctor::doctor()),
        Cmd::Drill {
            dir,
            ecosystem,
            scorecard,
            policy,
            rules,
            user,
            command,
        } => status_of(mode::drill::drill(mode::drill::DrillOptions {
            dir,
            ecosystem: ecosystem.map(|e| match e.as_str() {
                "npm" => mode::drill::kit::Ecosystem::Npm,
                _ => mode::drill::kit::Ecosystem::Pip,
            }),
            command,
            scorecard,
            policy,
            rules,
            user,
        })),
        Cmd::Diff {
            baseline,
            new,
            format,
            fail_on_new,
        } => monitor::mode::diff::run(&baseline, &new, &format, fail_on_new),
        Cmd::Learn { report, output } => {
            match monitor::mode::learn::learn_file(&report, output.as_deref()) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    exit::INTERNAL
                }
            }
        }
        Cmd::Agent {
            command,
            config,
            pidfile,
            ring_size,
        } => match command {
            Some(AgentCmd::Check { file }) => {
                mode::agent::check(file.as_deref().unwrap_or(&config))
            }
            Some(AgentCmd::Reload) => mode::agent::reload(&pidfile),
            None => status_of(rt.block_on(mode::agent::agent(mode::agent::AgentOptions {
                config,
                pidfile,
                ring_bytes: ring_size,
            }))),
        },
    }
}

/// A command's exit status, or buildwatch's own failure (reported) as [`exit::INTERNAL`].
fn status_of(r: anyhow::Result<i32>) -> i32 {
    exit::of_result(r, |e| note(&format!("error: {e:#}")))
}
