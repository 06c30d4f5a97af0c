//! Just enough of the shell to read a knockd command: statements split at `;`, `&&`, `||`,
//! `|` and `&`, words with their quotes and escapes resolved, redirections and comments left out.
//! Substitutions and subshells are not followed: a command using them is unclear.

/// The statements of a shell command line, each as its words; `None` when the quoting is
/// broken or the line uses what this reader does not follow (substitutions, subshells).
pub(super) fn statements(command: &str) -> Option<Vec<Vec<String>>> {
    let mut all = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut Option<String>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => w.push(other),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        '$' | '`' => return None,
                        other => w.push(other),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            '$' | '`' | '(' | ')' => return None,
            // A comment runs to the end of the line.
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            // `2>&1` and `&>file` are redirections, not separators.
            '&' if word.as_deref().is_some_and(|w| w.ends_with('>'))
                || chars.peek() == Some(&'>') =>
            {
                word.get_or_insert_with(String::new).push(c);
            }
            ';' | '&' | '|' | '\n' => {
                end_word(&mut words, &mut word);
                // `&&`, `||`: one separator.
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                if !words.is_empty() {
                    all.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut words, &mut word);
    if !words.is_empty() {
        all.push(words);
    }
    Some(all.into_iter().map(without_redirections).collect())
}

/// A statement's words without its redirections (`>/dev/null`, `2>&1`, `>> log`).
fn without_redirections(words: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        let operator = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if operator.starts_with('>') || operator.starts_with('<') {
            // `>` alone takes the next word as its file; `>file` and `2>&1` carry it.
            skip_next =
                operator.trim_start_matches(['>', '<', '&']).is_empty() && !operator.ends_with('&');
            continue;
        }
        kept.push(word);
    }
    kept
}

/// The program a statement runs (past `sudo` and `exec`), by its file name, and its arguments.
pub(super) fn program(words: &[String]) -> Option<(&str, &[String])> {
    let mut rest = words;
    loop {
        let (first, tail) = rest.split_first()?;
        let name = first.rsplit('/').next().unwrap_or(first);
        if matches!(name, "sudo" | "exec" | "command") {
            rest = tail;
            continue;
        }
        return Some((name, tail));
    }
}
