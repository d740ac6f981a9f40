//! Naming a conversation after its first answer ([`TitlePolicy`]).

use std::time::Duration;

use futures_util::StreamExt;

use super::ChatEngine;
use super::answer::Allowance;
use crate::{
    ConversationChange, ConversationId, LlmEvent, LlmRequest, MessageRole, PromptMessage, UserId,
    estimate_tokens, now_millis,
};

/// How a conversation gets its title once its first answer ends (whatever way it ended: a
/// title must not stay empty because the answer failed). A title a member set is not
/// replaced (but for a rename that lands in the moment the automatic one is written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TitlePolicy {
    /// Conversations stay untitled until a member names them.
    Off,
    /// The first words of the message answered (at most six words and 60 characters, then
    /// `…` when cut).
    #[default]
    FirstWords,
    /// The model is asked for a short title (its tokens counted to the asker's budget);
    /// when it fails or says nothing usable, the first words are used.
    AskModel,
}

/// The most words [`TitlePolicy::FirstWords`] takes.
pub(crate) const FIRST_WORDS: usize = 6;
/// The most characters [`TitlePolicy::FirstWords`] takes.
pub(crate) const FIRST_WORDS_CHARS: usize = 60;

/// The first words of `text` as a title: whitespace collapsed, markdown's marks around a
/// word (`**bold**`, `` `code` ``, `# heading`, `> quote`) taken off, at most [`FIRST_WORDS`]
/// words and [`FIRST_WORDS_CHARS`] characters (cut at a character, with `…` when cut).
/// `None` when `text` holds no word.
pub(crate) fn first_words(text: &str) -> Option<String> {
    // A title is shown as text: `**Rust**` would show its asterisks. Emphasis and code
    // marks go wherever they are in a word; heading, quote and strike marks at its edges.
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.replace(['*', '`'], "")
                .trim_start_matches(['#', '>'])
                .trim_matches('~')
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut title = words[..words.len().min(FIRST_WORDS)].join(" ");
    let mut cut = words.len() > FIRST_WORDS;
    if title.chars().count() > FIRST_WORDS_CHARS {
        title = title.chars().take(FIRST_WORDS_CHARS).collect();
        title = title.trim_end().to_owned();
        cut = true;
    }
    if cut {
        title.push('…');
    }
    Some(title)
}

/// Makes what a model answered to "a title, please" a title: first line, quotes and a final
/// period taken off, at most `max_chars`. `None` when nothing is left.
pub(crate) fn clean_model_title(answer: &str, max_chars: usize) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    // Models dress a title up as a heading, in bold or quotes, or after "Title:".
    let decoration = |c: char| matches!(c, '#' | '*' | '_' | '"' | '\'' | '“' | '”' | '`');
    let line = line.trim_start_matches(|c: char| decoration(c) || c.is_whitespace());
    let line = line.strip_prefix("Title:").unwrap_or(line);
    let line = line
        .trim_matches(|c: char| decoration(c) || c.is_whitespace())
        .trim_end_matches('.')
        .trim_matches(|c: char| decoration(c) || c.is_whitespace());
    if line.is_empty() {
        return None;
    }
    Some(
        line.chars()
            .take(max_chars)
            .collect::<String>()
            .trim_end()
            .to_owned(),
    )
}

/// How long the model may take to name a conversation before the first words are used.
const ASK_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of the first message the model is shown to name it, in characters.
const ASK_CHARS: usize = 2_000;
/// The instruction given to the model with [`TitlePolicy::AskModel`].
const ASK_PROMPT: &str = "Write a title of at most six words for a conversation that \
    begins with the user's message below. Answer with the title only: no quotes, no \
    final period.";

/// What naming a conversation needs from the answer after which it is named.
pub(super) struct Naming {
    pub(super) conversation: ConversationId,
    /// The user whose message was answered: a title the model makes is counted to them.
    pub(super) asker: UserId,
    /// The message answered.
    pub(super) question: String,
    /// The model of the answer.
    pub(super) model: Option<String>,
    pub(super) budget: Option<Allowance>,
}

impl ChatEngine {
    /// Names a conversation that has no title yet, as [`EngineConfig::titles`] says, and
    /// tells its members. Runs after the answer's end (a title never delays an answer);
    /// failures are logged: the conversation stays untitled until its next answer.
    ///
    /// [`EngineConfig::titles`]: crate::EngineConfig::titles
    pub(super) async fn name_conversation(&self, naming: Naming) {
        let policy = self.shared.config.titles;
        let max = self.shared.config.max_title_chars;
        let title = match policy {
            TitlePolicy::Off => return,
            TitlePolicy::AskModel => match self.ask_title(&naming).await {
                Some(title) => Some(title),
                None => first_words(&naming.question),
            },
            TitlePolicy::FirstWords => first_words(&naming.question),
        };
        let Some(title) = title.map(|t| t.chars().take(max).collect::<String>()) else {
            return;
        };
        let conversations = self.shared.stores.conversations();
        // A member may have named it meanwhile (or deleted it): their word stands. The gap
        // between this read and the write below is a few milliseconds; a rename that lands
        // in it is replaced, and the members see the title that won in
        // `conversation_updated`.
        match conversations.conversation(&naming.conversation).await {
            Ok(Some(info)) if info.title.is_none() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, conversation = %naming.conversation, "could not name the conversation");
                return;
            }
        }
        let change = ConversationChange {
            title: Some(title),
            ..ConversationChange::default()
        };
        let info = match conversations
            .update_conversation(&naming.conversation, &change, now_millis())
            .await
        {
            Ok(Some(info)) => info,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, conversation = %naming.conversation, "could not name the conversation");
                return;
            }
        };
        self.tell_updated(&info, None).await;
    }

    /// Asks the model for a title; `None` when it fails, takes too long or says nothing
    /// usable. What it uses is counted to the asker's budget, whatever the outcome.
    async fn ask_title(&self, naming: &Naming) -> Option<String> {
        let question: String = naming.question.chars().take(ASK_CHARS).collect();
        let request = LlmRequest {
            conversation_id: naming.conversation.clone(),
            user_id: naming.asker.clone(),
            messages: vec![
                PromptMessage::text(MessageRole::System, ASK_PROMPT.to_owned()),
                PromptMessage::text(MessageRole::User, question),
            ],
            tools: Vec::new(),
            model: naming.model.clone(),
        };
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let mut text = String::new();
        let mut reported = None;
        let asked = async {
            let mut stream = self.shared.provider.stream(request).await.ok()?;
            while let Some(item) = stream.next().await {
                match item.ok()? {
                    LlmEvent::Delta(delta) => text.push_str(&delta),
                    LlmEvent::Done { usage, .. } => {
                        reported = usage;
                        return Some(());
                    }
                    // A tool call or reasoning is not a title; the text said so far is.
                    _ => {}
                }
            }
            None
        };
        let done = tokio::time::timeout(ASK_TIMEOUT, asked)
            .await
            .ok()
            .flatten()
            .is_some();
        if let Some(budget) = &naming.budget {
            let used = reported.map_or_else(
                || prompt_tokens + estimate_tokens(&text),
                |usage| usage.total_tokens,
            );
            if let Err(e) = self
                .shared
                .stores
                .usage_ledger()
                .add_usage(&naming.asker, budget.window, used)
                .await
            {
                tracing::warn!(error = %e, "could not count a title's tokens");
            }
        }
        if !done {
            return None;
        }
        clean_model_title(&text, self.shared.config.max_title_chars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_words_are_short_and_marked_when_cut() {
        assert_eq!(first_words("  hello   world "), Some("hello world".into()));
        assert_eq!(
            first_words("one two three four five six seven"),
            Some("one two three four five six…".into())
        );
        let long = "a".repeat(100);
        let title = first_words(&long).unwrap();
        assert_eq!(title.chars().count(), FIRST_WORDS_CHARS + 1);
        assert!(title.ends_with('…'));
        assert_eq!(first_words(" \n "), None);
        assert_eq!(
            first_words("# How do **lifetimes** work with `&mut`?"),
            Some("How do lifetimes work with &mut?".into())
        );
        assert_eq!(first_words("** ``` >"), None);
    }

    #[test]
    fn model_titles_lose_their_decoration() {
        assert_eq!(
            clean_model_title("\n\"Rust lifetimes explained.\"\nmore", 200),
            Some("Rust lifetimes explained".into())
        );
        assert_eq!(
            clean_model_title("Title: **Trip**", 200),
            Some("Trip".into())
        );
        assert_eq!(clean_model_title("abcdef", 3), Some("abc".into()));
        assert_eq!(clean_model_title(" \"\" ", 200), None);
    }
}
