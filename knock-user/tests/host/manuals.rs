//! `knock-user generate-manuals`: a man page per visible subcommand that renders cleanly, and
//! shell completions that complete. No root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_knock-user");

struct Generated(PathBuf);

impl Generated {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("knock-manuals-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let output = Command::new(BINARY)
            .arg("generate-manuals")
            .arg(&dir)
            .output()
            .expect("knock-user runs");
        assert!(output.status.success(), "{output:?}");
        Self(dir)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The subcommands `knock-user --help` lists.
fn visible_subcommands() -> Vec<String> {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn there_is_a_page_for_the_command_and_each_subcommand_and_none_for_the_hidden_one() {
    let generated = Generated::new("pages");
    let subcommands = visible_subcommands();
    assert!(
        subcommands.iter().any(|s| s == "run"),
        "parsed no subcommands from --help: {subcommands:?}"
    );
    assert!(!subcommands.iter().any(|s| s == "generate-manuals"));
    let mut expected: Vec<String> = subcommands
        .iter()
        .map(|s| format!("knock-user-{s}.1"))
        .collect();
    expected.push("knock-user.1".to_owned());
    expected.sort();
    let mut pages: Vec<String> = std::fs::read_dir(generated.path("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages, expected);
}

fn render(page: &Path) -> (String, String) {
    let output = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man runs (Debian's man-db)");
    assert!(output.status.success(), "{output:?}");
    // Drop overstrike bold and underline (`N\x08N`, `_\x08x`): keep what follows each backspace.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&output.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    (text, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_pages_render_without_warnings_and_say_what_clap_cannot() {
    let generated = Generated::new("render");
    for entry in std::fs::read_dir(generated.path("man")).unwrap() {
        let page = entry.unwrap().path();
        let (text, warnings) = render(&page);
        assert!(warnings.trim().is_empty(), "{}: {warnings}", page.display());
        assert!(text.contains("SEE ALSO"), "{}: {text}", page.display());
    }
    let (top, _) = render(&generated.path("man/knock-user.1"));
    for needle in ["knock-user-run(1)", "/etc/knockd.conf", "knockd"] {
        assert!(top.contains(needle), "knock-user.1 lacks {needle}: {top}");
    }
    let (run, _) = render(&generated.path("man/knock-user-run.1"));
    for needle in ["knock-user run", "--xdp-mode", "SIGHUP", "SIGTERM"] {
        assert!(
            run.contains(needle),
            "knock-user-run.1 lacks {needle}: {run}"
        );
    }
    assert!(
        !top.contains("generate-manuals"),
        "the hidden subcommand stays hidden"
    );
}

/// What bash offers for `words`, the last being the word under the cursor.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let current = words[cword];
    let previous = words[cword - 1];
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; \
         _knock__user knock-user '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" ")
    );
    let output = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommands_their_options_and_their_values() {
    let generated = Generated::new("bash");
    let script = generated.path("completions/bash/knock-user");
    assert_eq!(bash_completes(&script, &["knock-user", "ru"]), ["run"]);
    assert!(bash_completes(&script, &["knock-user", "ge"]).is_empty());
    // Past the subcommand: the bug clap-rs/clap#6421 made these empty.
    assert_eq!(
        bash_completes(&script, &["knock-user", "run", "--xdp"]),
        ["--xdp-mode"]
    );
    assert_eq!(
        bash_completes(&script, &["knock-user", "run", "--xdp-mode", ""]),
        ["auto", "native", "skb"]
    );
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let generated = Generated::new("shells");
    let zsh = std::fs::read_to_string(generated.path("completions/zsh/_knock-user")).unwrap();
    let fish = std::fs::read_to_string(generated.path("completions/fish/knock-user.fish")).unwrap();
    assert!(zsh.starts_with("#compdef knock-user"), "{zsh}");
    for subcommand in visible_subcommands() {
        assert!(
            zsh.contains(&format!("'{subcommand}:")),
            "zsh: {subcommand}"
        );
        assert!(
            fish.contains(&format!("-a \"{subcommand}\"")),
            "fish: {subcommand}"
        );
    }
    assert!(!zsh.contains("generate-manuals") && !fish.contains("generate-manuals"));
}
