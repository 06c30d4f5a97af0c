//! What one boot showed: the guest driver's lines read back, judged, and tabled.

use super::vm::Accel;

/// The XDP programs the daemon loads on an Ethernet link, each with the most instructions the
/// verifier of any matrix kernel may walk to accept it (the kernel's own limit is 1,000,000).
/// Kernels report the walk from 5.16 on; these are the largest walks of any matrix kernel with
/// about 10 % to spare (6.1's for knock, 112,830, knock_spa, 2,187, knock_open, 2,331, and
/// knock_guard, 2,137; 6.12's for knock_gate, 5,262), as the development kernel's ceilings in
/// knock-user/tests/kernel/verifier.rs are. Raise one only with the reason in docs/kernels.md.
pub const VERIFIER_CEILINGS: [(&str, u32); 5] = [
    ("knock", 125_000),
    ("knock_spa", 2_400),
    ("knock_gate", 5_800),
    ("knock_open", 2_600),
    ("knock_guard", 2_400),
];

/// One program as the kernel took it, from the daemon's `-v` line
/// "program knock: 2345 instructions, verifier walked 241875, JIT image 12345 bytes".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub name: String,
    pub walked: Option<u32>,
    /// Bytes of JIT image; 0 when the kernel interprets the program.
    pub jited: u32,
}

impl Program {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("program ")?;
        let (name, facts) = rest.split_once(": ")?;
        let number = |after: &str| {
            let (_, tail) = facts.split_once(after)?;
            let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        Some(Self {
            name: name.to_owned(),
            walked: number("verifier walked "),
            jited: number("JIT image ").unwrap_or(0),
        })
    }
}

pub struct Verdict {
    pub row: &'static str,
    pub release: String,
    pub accel: Accel,
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    pub programs: Vec<Program>,
    pub rss_kb: Option<u64>,
    pub peak_kb: Option<u64>,
    pub log: Vec<String>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// Reads the driver's lines (without their "MATRIX " prefix) and judges them.
pub fn parse(row: &'static str, accel: Accel, lines: &[String]) -> Verdict {
    let mut verdict = Verdict {
        row,
        release: String::new(),
        accel,
        passed: Vec::new(),
        failed: Vec::new(),
        programs: Vec::new(),
        rss_kb: None,
        peak_kb: None,
        log: Vec::new(),
        notes: Vec::new(),
        seconds: 0.0,
    };
    let mut in_kallsyms = Vec::new();
    for line in lines {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "INFO" => {
                if let Some(kernel) = rest.strip_prefix("kernel ") {
                    verdict.release = kernel.to_owned();
                } else {
                    verdict.notes.push(rest.to_owned());
                }
            }
            "PASS" => verdict.passed.push(rest.to_owned()),
            "FAIL" => verdict.failed.push(rest.to_owned()),
            "PROGRAM" => verdict.programs.extend(Program::parse(rest)),
            "KALLSYMS" => in_kallsyms.push(rest.to_owned()),
            // The last reading, after the knocks, is the daemon at work.
            "RSS" => verdict.rss_kb = rest.trim_end_matches(" kB").parse().ok(),
            // The high-water mark: loading (parsing the kernel's BTF) peaks above the steady state.
            "PEAK" => verdict.peak_kb = rest.trim_end_matches(" kB").parse().ok(),
            "LOG" => verdict.log.push(rest.trim_start_matches("| ").to_owned()),
            _ => {}
        }
    }
    let loaded = !verdict.programs.is_empty();
    for (name, ceiling) in VERIFIER_CEILINGS.into_iter().filter(|_| loaded) {
        let Some(program) = verdict.programs.iter().find(|p| p.name == *name) else {
            verdict
                .failed
                .push(format!("the daemon did not report program {name}"));
            continue;
        };
        let named = in_kallsyms.iter().any(|n| n == name);
        if program.jited > 0 && named {
            verdict.passed.push(format!(
                "the JIT compiled {name}: a {} byte image, bpf_prog_*_{name} in kallsyms",
                program.jited
            ));
        } else {
            verdict.failed.push(format!(
                "{name} is not JIT-compiled (JIT image {} bytes, {}in kallsyms): the kernel \
                 interprets it",
                program.jited,
                if named { "" } else { "not " }
            ));
        }
        match program.walked {
            Some(walked) if walked <= ceiling => verdict.passed.push(format!(
                "the verifier walked {walked} instructions of {name}, within its ceiling of \
                 {ceiling}"
            )),
            Some(walked) => verdict.failed.push(format!(
                "the verifier walked {walked} instructions of {name}, over its ceiling of \
                 {ceiling}"
            )),
            None => verdict.notes.push(format!(
                "the kernel does not report the verifier's walk of {name} (it does from 5.16)"
            )),
        }
    }
    if !lines.iter().any(|l| l == "DONE ok" || l == "DONE failed") {
        verdict.failed.push("the driver did not finish".into());
    }
    verdict
}

pub fn show(verdict: &Verdict) {
    for pass in &verdict.passed {
        eprintln!("  ok   {pass}");
    }
    for note in &verdict.notes {
        eprintln!("  note {note}");
    }
    for fail in &verdict.failed {
        eprintln!("  FAIL {fail}");
    }
    if !verdict.failed.is_empty() {
        eprintln!("  knock-user's output (on a load failure, the verifier's last lines):");
        for line in &verdict.log {
            eprintln!("    | {line}");
        }
    }
}

/// The lines that prove SPA and the rotating door on this kernel.
pub fn evidence(verdict: &Verdict) -> impl Iterator<Item = &String> {
    verdict
        .passed
        .iter()
        .filter(|p| p.contains("SPA") || p.contains("rotating"))
}

pub fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| kernel | release | accel | ");
    for (name, _) in VERIFIER_CEILINGS {
        out.push_str(&format!("{name}: verifier walked | {name}: JIT image | "));
    }
    out.push_str("daemon VmRSS (peak) | checks | result | time |\n|");
    out.push_str(&" --- |".repeat(7 + 2 * VERIFIER_CEILINGS.len()));
    out.push('\n');
    for v in verdicts {
        let memory = format!("{} ({})", mib(v.rss_kb), mib(v.peak_kb));
        let mut programs = String::new();
        for (name, _) in VERIFIER_CEILINGS {
            let program = v.programs.iter().find(|p| p.name == name);
            let walked = program.and_then(|p| p.walked).map_or_else(
                || if program.is_some() { "n/a" } else { "-" }.to_owned(),
                thousands,
            );
            let jited = match program {
                Some(p) if p.jited > 0 => format!("{} B", thousands(p.jited)),
                Some(_) => "interpreted".to_owned(),
                None => "-".to_owned(),
            };
            programs.push_str(&format!("{walked} | {jited} | "));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {programs}{memory} | {}/{} | {} | {:.0} s |\n",
            v.row,
            v.release,
            v.accel.name(),
            v.passed.len(),
            v.passed.len() + v.failed.len(),
            if v.failed.is_empty() { "pass" } else { "FAIL" },
            v.seconds,
        ));
    }
    out
}

fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "-".to_owned(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn program_lines_give_walk_and_jit_image() {
        let program = Program::parse(
            "program knock_spa: 812 instructions, verifier walked 4321, JIT image 5678 bytes",
        );
        assert_eq!(
            program,
            Some(Program {
                name: "knock_spa".into(),
                walked: Some(4321),
                jited: 5678
            })
        );
        let old = Program::parse(
            "program knock: 2345 instructions, verifier walked ? (kernels before 5.16 do not \
             say), not JIT-compiled (the kernel interprets it)",
        );
        assert_eq!(
            old,
            Some(Program {
                name: "knock".into(),
                walked: None,
                jited: 0
            })
        );
    }

    #[test]
    fn every_program_must_be_jit_compiled_and_within_its_ceiling() {
        let over = VERIFIER_CEILINGS[0].1 + 1;
        let verdict = parse(
            "k",
            Accel::Tcg,
            &lines(&format!(
                "PROGRAM program knock: 1 instructions, verifier walked {over}, JIT image 9 bytes\n\
                 KALLSYMS knock\n\
                 PROGRAM program knock_spa: 1 instructions, verifier walked 5, not JIT-compiled\n\
                 PROGRAM program knock_gate: 1 instructions, verifier walked 5, JIT image 9 bytes\n\
                 KALLSYMS knock_gate\n\
                 PROGRAM program knock_open: 1 instructions, verifier walked 5, JIT image 9 bytes\n\
                 KALLSYMS knock_open\n\
                 PROGRAM program knock_guard: 1 instructions, verifier walked 5, JIT image 9 bytes\n\
                 KALLSYMS knock_guard\n\
                 DONE ok"
            )),
        );
        assert_eq!(verdict.failed.len(), 2, "{:?}", verdict.failed);
        assert!(verdict.failed[0].contains("over its ceiling"));
        assert!(verdict.failed[1].contains("knock_spa is not JIT-compiled"));
        assert!(
            verdict
                .passed
                .iter()
                .any(|p| p.contains("JIT compiled knock"))
        );
    }

    #[test]
    fn a_program_the_daemon_does_not_report_fails_and_an_unknown_walk_is_a_note() {
        let verdict = parse(
            "k",
            Accel::Tcg,
            &lines(
                "PROGRAM program knock: 1 instructions, verifier walked ? (x), JIT image 9 bytes\n\
                 KALLSYMS knock\n\
                 DONE ok",
            ),
        );
        assert_eq!(
            verdict.failed,
            [
                "the daemon did not report program knock_spa",
                "the daemon did not report program knock_gate",
                "the daemon did not report program knock_open",
                "the daemon did not report program knock_guard"
            ]
        );
        assert!(verdict.notes[0].contains("does not report the verifier's walk of knock"));
    }

    #[test]
    fn a_driver_that_stops_early_fails() {
        let verdict = parse("k", Accel::Tcg, &lines("PASS something"));
        assert_eq!(verdict.failed, ["the driver did not finish"]);
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(thousands(601_861), "601,861");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
