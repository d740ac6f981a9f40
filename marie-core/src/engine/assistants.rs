//! Who answers a message (`docs/protocol.md` section 10): the conversation's
//! [`AnswerPolicy`], the message's `@mentions` of the app's named [`Assistant`]s, and
//! `send_message.answer`, which overrides the policy for one message.

use serde::Serialize;

use crate::{AnswerPolicy, Error};

/// A named assistant the app declares ([`EngineConfig::assistants`](crate::EngineConfig::assistants)):
/// members call it in with `@name`, and its answers carry its name.
///
/// ```
/// use marie_core::Assistant;
///
/// let calc = Assistant::new("calc")
///     .system_prompt("You do arithmetic with the calculate tool.")
///     .tools(["calculate"]);
/// assert_eq!(calc.name, "calc");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Assistant {
    /// What members write after `@` (letters, digits, `_` and `-`; matched ignoring case).
    pub name: String,
    /// The model it asks, given to the provider as it is; `None`: the conversation's (or
    /// the app's default).
    pub model: Option<String>,
    /// Its instructions, given to the model after the app's and the conversation's.
    #[serde(skip)]
    pub system_prompt: Option<String>,
    /// The tools it may call, by name; `None`: all the app's. The model is offered only
    /// these, and a call of another is an error result the model sees.
    #[serde(skip)]
    pub tools: Option<Vec<String>>,
}

impl Assistant {
    /// An assistant called `name`, with the conversation's model and all the app's tools.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            model: None,
            system_prompt: None,
            tools: None,
        }
    }

    /// Sets [`model`](Self::model).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets [`system_prompt`](Self::system_prompt).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Sets [`tools`](Self::tools): only these.
    pub fn tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `name` is a name an assistant may have: what a mention can match.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty() && name.len() <= 64 && name.chars().all(is_name_char)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The first assistant of `assistants` that `text` mentions, `@name`. A mention starts a
/// word (so `bob@calc.com`, an e-mail address, mentions nobody) and ends where the name's
/// characters do; a name no assistant has (`@bob`) is plain text.
pub(super) fn mentioned<'a>(assistants: &'a [Assistant], text: &str) -> Option<&'a Assistant> {
    if assistants.is_empty() {
        return None;
    }
    let mut prev: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts_word = prev.is_none_or(|p| !(is_name_char(p) || p == '.' || p == '@'));
        prev = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let rest = &text[at + 1..];
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = &rest[..end];
        if let Some(found) = assistants
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            return Some(found);
        }
    }
    None
}

/// Whether a message is answered, and by which assistant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Answering {
    /// Stored and told to the room, not answered.
    No,
    /// Answered by this assistant (`None`: the app declares none).
    By(Option<Assistant>),
}

/// Who answers `text` in a conversation with `policy`, given the sender's `answer`
/// override: `bad_request` for `answer:true` where the policy is `never`. Without a
/// mention, the first assistant answers.
pub(super) fn who_answers(
    assistants: &[Assistant],
    policy: AnswerPolicy,
    answer: Option<bool>,
    text: &str,
) -> Result<Answering, Error> {
    let named = || mentioned(assistants, text).or(assistants.first()).cloned();
    Ok(match (policy, answer) {
        (AnswerPolicy::Never, Some(true)) => {
            return Err(Error::BadRequest(
                "this conversation's answer_policy is \"never\": no message is answered".into(),
            ));
        }
        (_, Some(false)) | (AnswerPolicy::Never, None) => Answering::No,
        (AnswerPolicy::Mention, None) => match mentioned(assistants, text) {
            Some(assistant) => Answering::By(Some(assistant.clone())),
            None => Answering::No,
        },
        _ => Answering::By(named()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<Assistant> {
        vec![Assistant::new("echo"), Assistant::new("calc")]
    }

    fn name(a: Option<&Assistant>) -> Option<&str> {
        a.map(|a| a.name.as_str())
    }

    #[test]
    fn mentions_start_a_word_and_name_an_assistant() {
        let all = two();
        assert_eq!(name(mentioned(&all, "@calc 12*7")), Some("calc"));
        assert_eq!(name(mentioned(&all, "hey @CALC, 2+2?")), Some("calc"));
        assert_eq!(name(mentioned(&all, "(@echo) hi")), Some("echo"));
        assert_eq!(name(mentioned(&all, "@bob and then @echo")), Some("echo"));
        assert_eq!(name(mentioned(&all, "mail me at bob@calc.com")), None);
        assert_eq!(name(mentioned(&all, "@calculator")), None);
        assert_eq!(name(mentioned(&all, "@bob")), None);
        assert_eq!(name(mentioned(&all, "a.@calc")), None);
        assert_eq!(name(mentioned(&[], "@calc")), None);
    }

    #[test]
    fn the_policy_and_the_override_decide() {
        use AnswerPolicy::*;
        let all = two();
        let by = |n: &str| Answering::By(Some(Assistant::new(n)));
        assert_eq!(who_answers(&all, Always, None, "hi").unwrap(), by("echo"));
        assert_eq!(
            who_answers(&all, Always, None, "@calc 1").unwrap(),
            by("calc")
        );
        assert_eq!(
            who_answers(&all, Always, Some(false), "@calc").unwrap(),
            Answering::No
        );
        assert_eq!(
            who_answers(&all, Mention, None, "hi").unwrap(),
            Answering::No
        );
        assert_eq!(
            who_answers(&all, Mention, None, "@bob hi").unwrap(),
            Answering::No
        );
        assert_eq!(
            who_answers(&all, Mention, None, "@calc 2").unwrap(),
            by("calc")
        );
        assert_eq!(
            who_answers(&all, Mention, Some(true), "hi").unwrap(),
            by("echo")
        );
        assert_eq!(
            who_answers(&all, Never, None, "@calc").unwrap(),
            Answering::No
        );
        assert!(matches!(
            who_answers(&all, Never, Some(true), "hi"),
            Err(Error::BadRequest(_))
        ));
        assert_eq!(
            who_answers(&[], Always, None, "hi").unwrap(),
            Answering::By(None)
        );
        assert_eq!(
            who_answers(&[], Mention, None, "@x").unwrap(),
            Answering::No
        );
    }
}
