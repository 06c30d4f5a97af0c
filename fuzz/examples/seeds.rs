//! Writes the checked-in seeds of the `classify` target from the packet corpus
//! (`knock-user/tests/kernel/corpus/`), and runs every seed of both targets through their checks.
//! Run it after changing the corpus: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::fs;
use std::path::Path;

#[path = "../../knock-user/tests/kernel/corpus/cases.rs"]
mod cases;

/// One case in this many becomes a seed, plus the first case of each suspected bug: a few
/// dozen small files that reach every part of the classifier.
const EVERY: usize = 8;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let frames = root.join("classify");
    for old in fs::read_dir(&frames)? {
        fs::remove_file(old?.path())?;
    }
    let mut bugs = Vec::new();
    let mut written = 0;
    for (category, cases) in cases::categories() {
        for (index, case) in cases.iter().enumerate() {
            let first_of_its_bug = case.suspected_bug.is_some_and(|bug| !bugs.contains(&bug));
            if index % EVERY != 0 && !first_of_its_bug {
                continue;
            }
            bugs.extend(case.suspected_bug);
            let Some(step) = case.steps.last() else {
                continue;
            };
            knock_fuzz::check_frame(&step.frame);
            fs::write(
                frames.join(format!("{category}-{}", slug(&case.name))),
                &step.frame,
            )?;
            written += 1;
        }
    }
    let mut configs = 0;
    for seed in fs::read_dir(root.join("config_parse"))? {
        knock_fuzz::check_config(&fs::read(seed?.path())?);
        configs += 1;
    }
    println!("wrote {written} frame seeds; {configs} configuration seeds pass their checks");
    Ok(())
}

/// A file name from a case name: lower case, words joined by dashes, at most 60 characters.
fn slug(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut slug = String::new();
    for word in words {
        if slug.len() + word.len() + 1 > 60 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word);
    }
    slug
}
