//! The shell's line editing beyond rustyline's defaults: Tab completes
//! command names (from [`COMMAND_NAMES`]), and Ctrl-C clears a line that has
//! text or, on an empty line, leaves the shell as redis-cli does.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Cmd, ConditionalEventHandler, Context, Event, EventContext, Helper, Movement, RepeatCount};

use super::command::COMMAND_NAMES;

/// The shell's rustyline helper: completion only.
pub struct ShellHelper;

/// Command names (and their longer other names) that start with `prefix`,
/// in any case; sorted, each with a space after it.
pub fn completions(prefix: &str) -> Vec<String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut names: Vec<String> = COMMAND_NAMES
        .iter()
        .flat_map(|(name, others)| std::iter::once(name).chain(others.iter()))
        .filter(|name| name.len() > 2 && name.starts_with(&prefix))
        .map(|name| format!("{name} "))
        .collect();
    names.sort();
    names
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    /// Completes the first word only: the command name.
    fn complete(
        &self,
        line: &str,
        position: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..position];
        let start = typed.len() - typed.trim_start().len();
        if typed[start..].contains(char::is_whitespace) {
            return Ok((position, Vec::new()));
        }
        let candidates = completions(&typed[start..])
            .into_iter()
            .map(|name| Pair { display: name.trim_end().to_owned(), replacement: name })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// Ctrl-C: clears a line with text; on an empty line, interrupts (the shell leaves).
pub struct ClearOrLeave;

impl ConditionalEventHandler for ClearOrLeave {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, context: &EventContext<'_>) -> Option<Cmd> {
        if context.line().is_empty() { Some(Cmd::Interrupt) } else { Some(Cmd::Kill(Movement::WholeBuffer)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_offers_matching_command_names() {
        assert_eq!(completions("gett"), vec!["gettable "]);
        assert_eq!(completions("GE"), vec!["get ", "getkeys ", "gettable "]);
        assert_eq!(completions("ch"), vec!["chain "]);
        assert!(completions("x").is_empty());
        assert!(completions("").len() >= COMMAND_NAMES.len(), "every name on an empty line");
    }
}
