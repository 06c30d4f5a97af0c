//! `knock-user generate-manuals DIR`: man pages and shell completions made from the command
//! line's own definition, so they never drift from it. Packaging runs it; it is hidden from
//! `--help`, the man pages and the completions.
//!
//! Writes `DIR/man/knock-user.1` and one page per subcommand (`knock-user-run.1`, ...), and
//! `DIR/completions/{bash/knock-user,zsh/_knock-user,fish/knock-user.fish}`, named as each shell
//! looks them up.

use std::path::Path;

use anyhow::Context as _;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// Writes every page and completion into `dir`; returns the paths written.
pub fn write(cli: clap::Command, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut cli = visible(cli).disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    for page in pages(&cli) {
        let path = man.join(Man::new(page.clone()).get_filename());
        let mut text = Vec::new();
        Man::new(page.clone()).render(&mut text)?;
        text.extend_from_slice(extra(&page).as_bytes());
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    for (shell, sub, name) in [
        (Shell::Bash, "bash", "knock-user"),
        (Shell::Zsh, "zsh", "_knock-user"),
        (Shell::Fish, "fish", "knock-user.fish"),
    ] {
        let shell_dir = dir.join("completions").join(sub);
        std::fs::create_dir_all(&shell_dir)?;
        let path = shell_dir.join(name);
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), "knock-user", &mut script);
        let mut script = String::from_utf8(script)?;
        if shell == Shell::Bash {
            // clap_complete spells the state of a subcommand of a hyphenated binary one way in
            // its dispatch loop and another in its case arms, so no subcommand option would ever
            // complete (clap-rs/clap#6421). Spell the arms as the loop does.
            script = script.replace("knock__subcmd__user", "knock__user");
        }
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The command without its hidden subcommands, which completions would otherwise offer.
fn visible(cli: clap::Command) -> clap::Command {
    let subcommands: Vec<clap::Command> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut copy = clap::Command::new("knock-user")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cli.get_arguments().cloned())
        .subcommands(subcommands)
        .subcommand_required(cli.is_subcommand_required_set())
        .propagate_version(cli.is_propagate_version_set());
    if let Some(about) = cli.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(about) = cli.get_long_about() {
        copy = copy.long_about(about.clone());
    }
    copy
}

/// The top-level command and every visible subcommand, each named as its page
/// (`knock-user-run`) with its command line as the synopsis (`knock-user run`).
fn pages(cli: &clap::Command) -> Vec<clap::Command> {
    let mut pages = vec![cli.clone()];
    pages.extend(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    pages
}

/// Sections clap cannot derive: files, signals, the `knockd` name, related pages.
fn extra(page: &clap::Command) -> String {
    let mut roff = Roff::default();
    let see_also: Vec<&str> = match page.get_name() {
        "knock-user" => {
            roff.control("SH", ["FILES"]);
            roff.control("TP", []);
            roff.text([bold("/etc/knockd.conf")]);
            roff.text([roman(
                "The configuration, in knockd's format with knock's additions. \
                 /usr/share/doc/knock/ describes every key and has an example.",
            )]);
            roff.control("SH", ["KNOCKD COMPATIBILITY"]);
            roff.text([
                roman("Invoked through a link named "),
                bold("knockd"),
                roman(", knock-user takes knockd's command line and runs the daemon, as "),
                bold("knock-user run"),
                roman(" does. The Debian package ships such a link as "),
                bold("/usr/libexec/knock/knockd"),
                roman(" (knockd's own package owns /usr/sbin/knockd)."),
            ]);
            vec!["knockd(1)", "knock(1)", "iptables(8)"]
        }
        "run" => {
            roff.control("SH", ["SIGNALS"]);
            roff.control("TP", []);
            roff.text([bold("SIGHUP")]);
            roff.text([roman(
                "Re-read the configuration without detaching. Open doors stay open; \
                 a broken file is reported and the running configuration stays.",
            )]);
            roff.control("TP", []);
            roff.text([bold("SIGINT"), roman(", "), bold("SIGTERM")]);
            roff.text([roman("Stop the daemon.")]);
            roff.control("SH", ["FILES"]);
            roff.control("TP", []);
            roff.text([bold("/etc/knockd.conf")]);
            roff.text([roman("The default configuration.")]);
            roff.control("TP", []);
            roff.text([bold("/var/lib/knock/"), italic("INTERFACE"), bold(".used")]);
            roff.text([roman(
                "The record of used one-time and rotating sequences (--record-dir), which \
                 a reboot keeps: they never open again.",
            )]);
            roff.control("TP", []);
            roff.text([bold("/usr/lib/systemd/system/knock.service")]);
            roff.text([
                roman("The systemd unit that runs "),
                bold("knock-user run"),
                roman("."),
            ]);
            vec![
                "knock-user(1)",
                "knock-user-check(1)",
                "knockd(1)",
                "systemd.exec(5)",
            ]
        }
        _ => vec!["knock-user(1)"],
    };
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, page) in see_also.iter().enumerate() {
        let (name, section) = page.split_once('(').unwrap_or((page, ""));
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(italic(name));
        inlines.push(roman(format!("({section}")));
    }
    roff.text(inlines);
    // Drop the apostrophe preamble: the page rendered by clap_mangen already has it.
    roff.render()
        .lines()
        .filter(|line| !line.contains(".ds Aq"))
        .map(|line| format!("{line}\n"))
        .collect()
}
