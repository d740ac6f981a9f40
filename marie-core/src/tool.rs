//! [`Tool`]: a function of the app that the model may call, and [`Toolbox`], the engine's
//! set of them with their argument validators.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{ConversationId, StreamId, ToolSpec, UserId};

/// What a tool call knows of where it runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ToolContext {
    /// The user whose message the answer answers.
    pub user_id: UserId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The call's id.
    pub tool_call_id: String,
    /// Cancelled when the answer is cancelled or the server stops. The engine also drops
    /// the call's future then; the token is for work the tool hands to other tasks.
    pub cancel: CancellationToken,
}

/// A tool call that failed: the model is told the message and the answer goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The tool could not do what was asked; the text is for the model (and the page).
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// A failure with this message for the model.
    pub fn new(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// A function of the app that the model may call.
///
/// The engine offers every registered tool to the model with its name, description and
/// argument schema; validates each call's arguments against the schema before the call;
/// asks a member of the conversation to approve the calls that [need
/// it](Tool::needs_approval); and runs the call with a timeout
/// ([`EngineConfig::tool_timeout`](crate::EngineConfig::tool_timeout)). A call that fails,
/// times out or panics becomes an error result that the model sees; the answer goes on.
///
/// Object-safe like the other backends; [`tool_fn`] makes one of a closure.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name the model calls it by: `[A-Za-z0-9_-]`, at most 64 characters (the limit of
    /// the OpenAI API).
    fn name(&self) -> &str;

    /// What the tool does, for the model.
    fn description(&self) -> &str;

    /// The JSON Schema of the arguments: an object schema.
    fn parameters(&self) -> Value;

    /// Whether this call must be approved by a member before it runs. The default: never.
    fn needs_approval(&self, _arguments: &Value) -> bool {
        false
    }

    /// Runs the call. `arguments` fit [`parameters`](Self::parameters). The output is what the
    /// model is told (a string as it is, anything else as JSON).
    async fn call(&self, arguments: Value, context: ToolContext) -> Result<Value, ToolError>;
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn description(&self) -> &str {
        (**self).description()
    }
    fn parameters(&self) -> Value {
        (**self).parameters()
    }
    fn needs_approval(&self, arguments: &Value) -> bool {
        (**self).needs_approval(arguments)
    }
    async fn call(&self, arguments: Value, context: ToolContext) -> Result<Value, ToolError> {
        (**self).call(arguments, context).await
    }
}

type ApprovalPolicy = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// A [`Tool`] made of a closure: see [`tool_fn`].
#[derive(Clone)]
pub struct ToolFn<F> {
    name: String,
    description: String,
    parameters: Value,
    approval: Option<ApprovalPolicy>,
    f: F,
}

/// Makes a [`Tool`] of an async closure, as `tower::service_fn` makes a service.
///
/// ```
/// use marie_core::{ToolError, tool_fn};
/// use serde_json::json;
///
/// let shout = tool_fn(
///     "shout",
///     "Upper-cases a text.",
///     json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
///     |args, _ctx| async move {
///         let text = args["text"].as_str().ok_or_else(|| ToolError::new("no text"))?;
///         Ok(json!(text.to_uppercase()))
///     },
/// )
/// .require_approval(false);
/// # let _ = shout;
/// ```
pub fn tool_fn<F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    parameters: Value,
    f: F,
) -> ToolFn<F>
where
    F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
{
    ToolFn {
        name: name.into(),
        description: description.into(),
        parameters,
        approval: None,
        f,
    }
}

impl<F> ToolFn<F> {
    /// Every call needs approval (`true`) or none does.
    pub fn require_approval(mut self, always: bool) -> Self {
        self.approval = always.then(|| Arc::new(|_: &Value| true) as ApprovalPolicy);
        self
    }

    /// A call needs approval when `policy` says so of its arguments.
    pub fn approval_when(
        mut self,
        policy: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.approval = Some(Arc::new(policy));
        self
    }
}

impl<F> std::fmt::Debug for ToolFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolFn")
            .field("name", &self.name)
            .field("approval", &self.approval.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<F, Fut> Tool for ToolFn<F>
where
    F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> Value {
        self.parameters.clone()
    }
    fn needs_approval(&self, arguments: &Value) -> bool {
        self.approval
            .as_ref()
            .is_some_and(|policy| policy(arguments))
    }
    async fn call(&self, arguments: Value, context: ToolContext) -> Result<Value, ToolError> {
        (self.f)(arguments, context).await
    }
}

/// A registered tool with its compiled argument validator.
struct Entry {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

/// The tools an engine offers, by name, each with its schema compiled once.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Arc<HashMap<String, Arc<Entry>>>,
    specs: Arc<Vec<ToolSpec>>,
}

/// Why a tool cannot be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolboxError {
    /// The name is empty, too long, or holds other characters than `[A-Za-z0-9_-]`.
    #[error("invalid tool name {0:?}: use 1 to 64 of [A-Za-z0-9_-]")]
    InvalidName(String),
    /// Another tool has this name.
    #[error("two tools are named {0:?}")]
    Duplicate(String),
    /// A client tool has the name of one of the server's tools.
    #[error("{0:?} is the name of a server tool")]
    Taken(String),
    /// A send declares more client tools than [`MAX_CLIENT_TOOLS`].
    #[error("at most {0} client tools")]
    TooMany(usize),
    /// The parameters are not a valid JSON Schema.
    #[error("the parameters of tool {name:?} are not a valid JSON Schema: {reason}")]
    InvalidSchema {
        /// The tool.
        name: String,
        /// What the validator said.
        reason: String,
    },
}

impl Toolbox {
    /// No tools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool, compiling its schema.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<(), ToolboxError> {
        let name = tool.name().to_owned();
        check_name(&name)?;
        if self.tools.contains_key(&name) {
            return Err(ToolboxError::Duplicate(name));
        }
        let parameters = tool.parameters();
        let validator = compile(&name, &parameters)?;
        Arc::make_mut(&mut self.specs).push(ToolSpec {
            name: name.clone(),
            description: tool.description().to_owned(),
            parameters,
        });
        let mut tools = HashMap::clone(&self.tools);
        tools.insert(name, Arc::new(Entry { tool, validator }));
        self.tools = Arc::new(tools);
        Ok(())
    }

    /// Whether there are no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// What the model is offered, in the order the tools were added.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name).map(|e| &e.tool)
    }

    /// Checks `arguments` against the schema of tool `name`: `Err` with what does not fit,
    /// as the model will be told it (at most five problems).
    pub fn validate(&self, name: &str, arguments: &Value) -> Result<(), String> {
        match self.tools.get(name) {
            Some(entry) => check(&entry.validator, arguments),
            None => Err(format!("there is no tool named {name:?}")),
        }
    }
}

/// Refuses a tool name a provider would not take: 1 to 64 of `[A-Za-z0-9_-]`.
fn check_name(name: &str) -> Result<(), ToolboxError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ToolboxError::InvalidName(name.to_owned()))
    }
}

/// Compiles the argument schema of tool `name`.
fn compile(name: &str, parameters: &Value) -> Result<jsonschema::Validator, ToolboxError> {
    jsonschema::validator_for(parameters).map_err(|e| ToolboxError::InvalidSchema {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks `arguments` against a tool's schema: `Err` with what does not fit, as the model
/// will be told it (at most five problems).
fn check(validator: &jsonschema::Validator, arguments: &Value) -> Result<(), String> {
    let problems: Vec<String> = validator
        .iter_errors(arguments)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the arguments do not fit the tool's schema: {}",
            problems.join("; ")
        ))
    }
}

/// The most client tools one send may declare.
pub const MAX_CLIENT_TOOLS: usize = 32;

/// Tools the client runs (`docs/protocol.md` section 11): declared with a send, offered to
/// the model beside the server's tools, and called like them, except that the answer waits
/// for a member's `submit_tool_result` instead of running anything. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClientTools {
    specs: Arc<[ToolSpec]>,
    validators: Arc<HashMap<String, jsonschema::Validator>>,
}

impl ClientTools {
    /// Checks and compiles the tools a send declares: names as for [`Toolbox::add`], none
    /// twice and none a tool of `server`'s (the model could not tell them apart), schemas
    /// valid, at most [`MAX_CLIENT_TOOLS`].
    pub fn new(specs: Vec<ToolSpec>, server: &Toolbox) -> Result<Self, ToolboxError> {
        if specs.len() > MAX_CLIENT_TOOLS {
            return Err(ToolboxError::TooMany(MAX_CLIENT_TOOLS));
        }
        let mut validators = HashMap::with_capacity(specs.len());
        for spec in &specs {
            check_name(&spec.name)?;
            if server.get(&spec.name).is_some() {
                return Err(ToolboxError::Taken(spec.name.clone()));
            }
            let validator = compile(&spec.name, &spec.parameters)?;
            if validators.insert(spec.name.clone(), validator).is_some() {
                return Err(ToolboxError::Duplicate(spec.name.clone()));
            }
        }
        Ok(Self {
            specs: specs.into(),
            validators: Arc::new(validators),
        })
    }

    /// What the model is offered, in the order declared.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// Whether `name` is one of these tools.
    pub fn contains(&self, name: &str) -> bool {
        self.validators.contains_key(name)
    }

    /// Checks `arguments` against the schema of tool `name`, as [`Toolbox::validate`] does.
    pub fn validate(&self, name: &str, arguments: &Value) -> Result<(), String> {
        match self.validators.get(name) {
            Some(validator) => check(validator, arguments),
            None => Err(format!("there is no tool named {name:?}")),
        }
    }
}

impl std::fmt::Debug for ClientTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.specs.iter().map(|s| &s.name))
            .finish()
    }
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.specs.iter().map(|s| &s.name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn echo(name: &str, schema: Value) -> Arc<dyn Tool> {
        Arc::new(tool_fn(
            name,
            "echo",
            schema,
            |args, _| async move { Ok(args) },
        ))
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let mut tools = Toolbox::new();
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        tools.add(echo("count", schema)).unwrap();
        assert!(tools.validate("count", &json!({"n": 3})).is_ok());
        let problem = tools.validate("count", &json!({"n": "three"})).unwrap_err();
        assert!(problem.contains("/n"), "{problem}");
        let problem = tools.validate("count", &json!({})).unwrap_err();
        assert!(
            problem.contains("\"n\" is a required property"),
            "{problem}"
        );
        assert!(tools.validate("nope", &json!({})).is_err());
    }

    #[test]
    fn bad_tools_are_refused() {
        let mut tools = Toolbox::new();
        tools.add(echo("a", json!({"type": "object"}))).unwrap();
        assert!(matches!(
            tools.add(echo("a", json!({"type": "object"}))),
            Err(ToolboxError::Duplicate(_))
        ));
        assert!(matches!(
            tools.add(echo("has space", json!({"type": "object"}))),
            Err(ToolboxError::InvalidName(_))
        ));
        assert!(matches!(
            tools.add(echo("b", json!({"type": 12}))),
            Err(ToolboxError::InvalidSchema { .. })
        ));
        assert_eq!(tools.specs().len(), 1);
    }

    #[test]
    fn approval_policies() {
        let always =
            tool_fn("a", "", json!({}), |a, _| async move { Ok(a) }).require_approval(true);
        assert!(Tool::needs_approval(&always, &json!({})));
        let never = tool_fn("b", "", json!({}), |a, _| async move { Ok(a) });
        assert!(!Tool::needs_approval(&never, &json!({})));
        let big = tool_fn("c", "", json!({}), |a, _| async move { Ok(a) })
            .approval_when(|args| args["amount"].as_u64().unwrap_or(0) > 100);
        assert!(Tool::needs_approval(&big, &json!({"amount": 500})));
        assert!(!Tool::needs_approval(&big, &json!({"amount": 5})));
    }
}
