//! The demo tools of the examples: `calculate` (arithmetic, runs at once) and `send_email`
//! (simulated, needs a member's approval). Included with `#[path]` beside `server.rs`.
//! `MARIE_DEMO_TOOLS=off` leaves them out.

use std::sync::{Arc, Mutex};

use marie_core::{Tool, ToolError, tool_fn};
use serde_json::{Value, json};

/// The longest expression `calculate` takes.
const MAX_EXPRESSION: usize = 200;

/// `calculate`: evaluates an arithmetic expression with `exmex` (`+ - * / ^`, parentheses,
/// `sqrt`, `sin`, ...).
pub(crate) fn calculate() -> impl Tool {
    tool_fn(
        "calculate",
        "Evaluates an arithmetic expression, such as 12*7 or (1+2)^3/sqrt(2), and returns its value.",
        json!({
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The expression to evaluate",
                    "minLength": 1,
                    "maxLength": MAX_EXPRESSION
                }
            },
            "required": ["expression"],
            "additionalProperties": false
        }),
        |args: Value, _ctx| async move {
            let expression = args["expression"].as_str().unwrap_or_default().trim();
            let value = exmex::eval_str::<f64>(expression)
                .map_err(|e| ToolError::new(format!("cannot evaluate {expression:?}: {e}")))?;
            if !value.is_finite() {
                return Err(ToolError::new(format!("{expression} has no finite value")));
            }
            Ok(json!({ "expression": expression, "value": value }))
        },
    )
}

/// The messages `send_email` "sent".
pub(crate) type Outbox = Arc<Mutex<Vec<Value>>>;

/// `send_email`: records the message in `outbox` and returns it. Every call needs a
/// member's approval.
pub(crate) fn send_email(outbox: Outbox) -> impl Tool {
    tool_fn(
        "send_email",
        "Sends an email (simulated: the demo records it). A member of the conversation must approve each one.",
        json!({
            "type": "object",
            "properties": {
                "to": {"type": "string", "description": "The recipient", "minLength": 1},
                "subject": {"type": "string"},
                "body": {"type": "string"}
            },
            "required": ["to"],
            "additionalProperties": false
        }),
        move |args: Value, ctx| {
            let outbox = outbox.clone();
            async move {
                let mut sent = outbox.lock().map_err(|_| ToolError::new("the outbox is broken"))?;
                let message = json!({
                    "id": sent.len() + 1,
                    "from": ctx.user_id,
                    "to": args["to"],
                    "subject": args.get("subject").cloned().unwrap_or_else(|| "Hello".into()),
                    "body": args.get("body").cloned().unwrap_or_else(|| "Sent from the MARIE demo.".into()),
                    "status": "sent (simulated)",
                });
                sent.push(message.clone());
                Ok(message)
            }
        },
    )
    .require_approval(true)
}

/// Whether the demo tools are on (`MARIE_DEMO_TOOLS`, default on).
pub(crate) fn enabled() -> bool {
    !matches!(
        std::env::var("MARIE_DEMO_TOOLS").as_deref().map(str::trim),
        Ok("off" | "0" | "false" | "no")
    )
}

/// The named assistants (`MARIE_ASSISTANTS`, comma-separated names; default
/// `assistant,calc`; `off`: none). The first answers a message that names none; one named
/// `calc` is the calculator, given only `calculate` (with the demo tools on). Members call
/// one in with `@name`.
pub(crate) fn assistants() -> Result<Vec<marie_core::Assistant>, crate::web::Words> {
    let text = std::env::var("MARIE_ASSISTANTS").unwrap_or_else(|_| "assistant,calc".into());
    if matches!(text.trim(), "off" | "none" | "") {
        return Ok(Vec::new());
    }
    let mut assistants: Vec<marie_core::Assistant> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !marie_core::Assistant::valid_name(name) {
            return Err(crate::web::Words(format!(
                "MARIE_ASSISTANTS: {name:?} is not an assistant name (letters, digits, `_` and `-`)"
            )));
        }
        if assistants.iter().any(|a| a.name.eq_ignore_ascii_case(name)) {
            return Err(crate::web::Words(format!(
                "MARIE_ASSISTANTS: {name:?} is named twice"
            )));
        }
        let mut assistant = marie_core::Assistant::new(name);
        if name == "calc" && enabled() {
            assistant = assistant
                .system_prompt("You are calc: you work out arithmetic with the calculate tool.")
                .tools(["calculate"]);
        }
        assistants.push(assistant);
    }
    Ok(assistants)
}
