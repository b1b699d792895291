//! A lab written down as a student worksheet (Markdown): the commands to retype, what was
//! observed on this machine, where the articles are out of date, and the questions. It
//! records [`Event`]s as a [`Narrator`] and renders them; it writes no file itself.

use crate::{Event, Narrator};
use std::cell::RefCell;

/// Records the narration of one lab and renders it as Markdown.
#[derive(Debug, Default)]
pub struct Worksheet {
    events: RefCell<Vec<Event>>,
}

impl Narrator for Worksheet {
    fn event(&self, e: &Event) {
        self.events.borrow_mut().push(e.clone());
    }
}

impl Worksheet {
    /// An empty worksheet.
    pub fn new() -> Worksheet {
        Worksheet::default()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    /// The worksheet as Markdown. `kernel` is shown in the header (what "this kernel" is).
    pub fn markdown(&self, kernel: &str) -> String {
        let events = self.events.borrow();
        let mut md = String::new();
        let mut in_code = false;
        let close = |md: &mut String, in_code: &mut bool| {
            if *in_code {
                md.push_str("```\n\n");
                *in_code = false;
            }
        };
        let mut questions = Vec::new();
        let mut articles = Vec::new();
        for e in events.iter() {
            match e {
                Event::Title { text } => {
                    close(&mut md, &mut in_code);
                    md.push_str(&format!("# {text}\n\n"));
                    md.push_str(&format!(
                        "Observed on Linux {kernel}. Run every command as root, from the lab's \
                         directory (the first `cd`).\n\n"
                    ));
                }
                Event::Step { text } => {
                    close(&mut md, &mut in_code);
                    md.push_str(&format!("## {text}\n\n"));
                }
                Event::Command { text } | Event::Output { text } => {
                    if !in_code {
                        md.push_str("```console\n");
                        in_code = true;
                    }
                    if matches!(e, Event::Command { .. }) {
                        md.push_str(&format!("$ {text}\n"));
                    } else {
                        md.push_str(&format!("{text}\n"));
                    }
                }
                Event::Observed { text } => {
                    close(&mut md, &mut in_code);
                    md.push_str(&format!("- Observed: {text}\n\n"));
                }
                Event::Text { text } => {
                    close(&mut md, &mut in_code);
                    md.push_str(&format!("{text}\n\n"));
                }
                Event::Article { claim, kernel } => {
                    close(&mut md, &mut in_code);
                    md.push_str(&format!(
                        "> **The article vs this kernel.** The article: {claim}  \n> This kernel: {kernel}\n\n"
                    ));
                    articles.push((claim.clone(), kernel.clone()));
                }
                Event::Question { text } => questions.push(text.clone()),
            }
        }
        close(&mut md, &mut in_code);
        if !articles.is_empty() {
            md.push_str("## Where the articles are out of date\n\n");
            for (c, k) in &articles {
                md.push_str(&format!("- {c} — on this kernel: {k}\n"));
            }
            md.push('\n');
        }
        if !questions.is_empty() {
            md.push_str("## Questions\n\n");
            for (i, q) in questions.iter().enumerate() {
                md.push_str(&format!("{}. {q}\n", i + 1));
            }
            md.push('\n');
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_fenced_and_questions_collected() {
        let w = Worksheet::new();
        w.event(&Event::Title { text: "t".into() });
        w.event(&Event::Command { text: "ls".into() });
        w.event(&Event::Output { text: "a".into() });
        w.event(&Event::Question {
            text: "why?".into(),
        });
        w.event(&Event::Observed { text: "x".into() });
        let md = w.markdown("6.1");
        assert!(md.contains("```console\n$ ls\na\n```"), "{md}");
        assert!(md.contains("## Questions\n\n1. why?"), "{md}");
        assert!(md.contains("- Observed: x"), "{md}");
    }
}
