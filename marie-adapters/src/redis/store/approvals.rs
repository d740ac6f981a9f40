//! [`Approvals`] in Redis: one hash per approval, `record` (the request) and, once
//! decided, `decision`, set with `HSETNX` so that the first decision wins; and per
//! conversation a pointer to the approval it waits for.
//!
//! The approval's key is named by the approval alone (an `approve_tool` names no more), so
//! it is in another cluster slot than the conversation's pointer: the two are written by
//! separate commands. The pointer is only a hint, checked against the record when read.

use std::sync::LazyLock;

use async_trait::async_trait;
use marie_core::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, Approvals, ConversationId,
    StoreError, ToolApprovalRequest,
};
use redis::{AsyncCommands, Script};

use super::{RedisStore, from_json, to_json};

/// KEYS: approval. ARGV: decision JSON. Returns `{"0"}` (no such approval), `{"1", record}`
/// (decided now) or `{"2", record, decision}` (decided before).
static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0'} end
local record = redis.call('HGET', KEYS[1], 'record')
if redis.call('HSETNX', KEYS[1], 'decision', ARGV[1]) == 1 then return {'1', record} end
return {'2', record, redis.call('HGET', KEYS[1], 'decision')}",
    )
});

/// KEYS: pointer. ARGV: approval id. Deletes the pointer if it still points at the approval.
static UNPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1",
    )
});

impl RedisStore {
    fn approval_key(&self, approval: &ApprovalId) -> String {
        format!("{}:approval:{{{approval}}}", self.config().prefix)
    }

    fn pending_key(&self, conversation: &ConversationId) -> String {
        format!("{}:conv:{{{conversation}}}:approval", self.config().prefix)
    }
    /// Drops the conversation's pointer to a request that no longer waits. Best effort: a
    /// stale pointer is filtered out when read, and lapses with the record.
    async fn unpoint(&self, request: &ToolApprovalRequest) {
        let pointer = self.pending_key(&request.conversation_id);
        let id = request.approval_id.to_string();
        let done = self
            .run("remove_approval", |mut c| async move {
                UNPOINT
                    .key(pointer)
                    .arg(id)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "could not drop an approval pointer");
        }
    }
}

#[async_trait]
impl Approvals for RedisStore {
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let request = &approval.request;
        let key = self.approval_key(&request.approval_id);
        let pointer = self.pending_key(&request.conversation_id);
        let id = request.approval_id.to_string();
        let record = to_json(request)?;
        let decision = approval.decision.as_ref().map(to_json).transpose()?;
        let until = approval.keep_until();
        self.run("create_approval", |mut c| async move {
            let mut pipe = redis::pipe();
            pipe.atomic().hset(&key, "record", record).ignore();
            match decision {
                Some(decision) => pipe.hset(&key, "decision", decision).ignore(),
                None => pipe
                    .set(&pointer, &id)
                    .ignore()
                    .pexpire_at(&pointer, until as i64)
                    .ignore(),
            };
            pipe.pexpire_at(&key, until as i64).ignore();
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let key = self.approval_key(approval);
        let (record, decision): (Option<String>, Option<String>) = self
            .run("approval", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("record")
                    .arg("decision")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        Ok(Some(ApprovalRecord {
            request: from_json::<ToolApprovalRequest>(&record)?,
            decision: decision.as_deref().map(from_json).transpose()?,
        }))
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        let key = self.approval_key(approval);
        let json = to_json(decision)?;
        let reply: Vec<String> = self
            .run("decide_approval", |mut c| async move {
                DECIDE.key(key).arg(json).invoke_async(&mut c).await
            })
            .await?;
        let request = |raw: Option<&String>| -> Result<ToolApprovalRequest, StoreError> {
            let raw =
                raw.ok_or_else(|| StoreError::Corrupt("an approval without its request".into()))?;
            from_json(raw)
        };
        match reply.first().map(String::as_str) {
            Some("1") => {
                let record = ApprovalRecord {
                    request: request(reply.get(1))?,
                    decision: Some(decision.clone()),
                };
                self.unpoint(&record.request).await;
                Ok(ApprovalOutcome::Decided(record))
            }
            Some("2") => Ok(ApprovalOutcome::AlreadyDecided(ApprovalRecord {
                request: request(reply.get(1))?,
                decision: reply.get(2).map(|d| from_json(d)).transpose()?,
            })),
            _ => Ok(ApprovalOutcome::NotFound),
        }
    }

    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let pointer = self.pending_key(conversation);
        let id: Option<String> = self
            .run(
                "pending_approval",
                |mut c| async move { c.get(pointer).await },
            )
            .await?;
        let Some(id) = id else { return Ok(None) };
        let id = ApprovalId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(self
            .approval(&id)
            .await?
            .filter(|a| a.decision.is_none() && a.request.conversation_id == *conversation))
    }

    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        let Some(record) = self.approval(approval).await? else {
            return Ok(());
        };
        let key = self.approval_key(approval);
        self.run("remove_approval", |mut c| async move {
            c.del::<_, ()>(key).await
        })
        .await?;
        self.unpoint(&record.request).await;
        Ok(())
    }
}
