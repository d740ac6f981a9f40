//! A user's conversations: the list, one conversation's details, renaming and settings,
//! the per-user archive, removing a member, deleting a conversation (`docs/protocol.md`
//! section 9), and the [`Notice`]s that tell the members.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ChatEngine;
use crate::{
    ChatMessage, ConversationChange, ConversationDeleted, ConversationId, ConversationInfo,
    ConversationPage, ConversationUpdated, Error, Identity, ListCursor, ListQuery, MessageId,
    Notice, Removed, UserId, now_millis,
};

/// A member's place in a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberRole {
    /// Its creator: may delete it and remove members.
    Owner,
    /// Let in by an invite.
    Member,
}

/// One member of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Their place.
    pub role: MemberRole,
}

/// What `get_conversation` answers: the record, its members, and whether the caller
/// archived it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationDetails {
    /// The conversation's record.
    pub info: ConversationInfo,
    /// Every member, the owner first.
    pub members: Vec<Member>,
    /// Whether the caller archived it.
    pub archived: bool,
}

/// What `export_conversation` answers: a member's own copy of a whole conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationExport {
    /// The record, members and the caller's archive flag, as `get_conversation` has them.
    pub details: ConversationDetails,
    /// Every message on every branch, in the order they were stored (`parent_id` gives the
    /// tree), with the attachments' metadata (not their bytes).
    pub messages: Vec<ChatMessage>,
    /// The last message of the active branch.
    pub active_leaf: Option<MessageId>,
    /// When the copy was made, in ms since the Unix epoch.
    pub exported_at: u64,
}

/// How many conversations a page of the list holds when the client does not say.
pub(crate) const DEFAULT_LIST_PAGE: usize = 30;
/// The most a page of the list holds.
pub(crate) const MAX_LIST_PAGE: usize = 100;
/// The longest list search, in characters.
const MAX_QUERY_CHARS: usize = 200;

impl ChatEngine {
    /// `list_conversations`: a page of the conversations `who` is a member of, most recently
    /// active first. `limit` defaults to 30 and is capped at 100; `before` is a cursor as this
    /// server gives them (`bad_request` otherwise).
    pub async fn list_conversations(
        &self,
        who: &Identity,
        before: Option<&str>,
        limit: Option<usize>,
        query: Option<&str>,
        archived: bool,
    ) -> Result<ConversationPage, Error> {
        let before = before.map(ListCursor::parse).transpose()?;
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        if query.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
            return Err(Error::BadRequest(format!(
                "query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let query = ListQuery {
            before,
            limit: limit.unwrap_or(DEFAULT_LIST_PAGE).clamp(1, MAX_LIST_PAGE),
            query: query.map(str::to_owned),
            archived,
        };
        Ok(self
            .shared
            .stores
            .conversations()
            .list_conversations(&who.user_id, &query)
            .await?)
    }

    /// `get_conversation`: the record, members and archive flag of a conversation `who`
    /// may enter.
    pub async fn conversation_details(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<ConversationDetails, Error> {
        let info = self.authorize(who, conversation).await?;
        let conversations = self.shared.stores.conversations();
        let members = conversations
            .members(conversation)
            .await?
            .into_iter()
            .map(|user_id| Member {
                role: if user_id == info.created_by {
                    MemberRole::Owner
                } else {
                    MemberRole::Member
                },
                user_id,
            });
        // The owner first, the others in the order they were let in.
        let (mut members, others): (Vec<_>, Vec<_>) =
            members.partition(|m| m.role == MemberRole::Owner);
        members.extend(others);
        let archived = conversations
            .is_archived(conversation, &who.user_id)
            .await?;
        Ok(ConversationDetails {
            info,
            members,
            archived,
        })
    }

    /// `export_conversation`: everything a member may read of `conversation`, in one piece
    /// (`GET /api/chat/conversations/{id}/export`). Reads every message, so it costs what
    /// the conversation holds; the command rate limit applies to it as to any command.
    pub async fn export_conversation(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<ConversationExport, Error> {
        let details = self.conversation_details(who, conversation).await?;
        let history = self.shared.stores.history();
        let messages = history.all_messages(conversation).await?;
        let active_leaf = history.active_leaf(conversation).await?;
        Ok(ConversationExport {
            details,
            messages,
            active_leaf,
            exported_at: now_millis(),
        })
    }

    /// `update_conversation`: any member renames it or changes its settings. A `model` must
    /// be one the app offers ([`EngineConfig::models`](crate::EngineConfig::models)); a
    /// `system_prompt` needs [`EngineConfig::max_system_prompt_chars`](crate::EngineConfig::max_system_prompt_chars).
    /// The members are told with `conversation_updated`; the next answer uses the settings.
    pub async fn update_conversation(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        change: ConversationChange,
    ) -> Result<ConversationInfo, Error> {
        self.authorize(who, conversation).await?;
        let change = self.check_change(change)?;
        let info = self
            .shared
            .stores
            .conversations()
            .update_conversation(conversation, &change, now_millis())
            .await?
            .ok_or(Error::NotFound("no such conversation"))?;
        self.tell_updated(&info, Some(&who.user_id)).await;
        Ok(info)
    }

    /// The change as it will be stored (a title trimmed), or why it cannot be.
    fn check_change(&self, mut change: ConversationChange) -> Result<ConversationChange, Error> {
        let config = &self.shared.config;
        if change.title.is_none()
            && change.model.is_none()
            && change.system_prompt.is_none()
            && change.answer_policy.is_none()
        {
            return Err(Error::BadRequest(
                "give at least one of title, model, system_prompt, answer_policy".into(),
            ));
        }
        if let Some(title) = &mut change.title {
            let trimmed = title.split_whitespace().collect::<Vec<_>>().join(" ");
            if trimmed.is_empty() {
                return Err(Error::BadRequest("title must not be empty".into()));
            }
            if trimmed.chars().count() > config.max_title_chars {
                return Err(Error::BadRequest(format!(
                    "title is longer than {} characters",
                    config.max_title_chars
                )));
            }
            *title = trimmed;
        }
        if let Some(model) = change.model.as_deref().filter(|m| !m.is_empty())
            && !config.models.iter().any(|m| m == model)
        {
            return Err(Error::BadRequest(if config.models.is_empty() {
                "this server offers no choice of model".into()
            } else {
                format!(
                    "model must be one of: {} (or \"\" for the default)",
                    config.models.join(", ")
                )
            }));
        }
        if let Some(prompt) = &change.system_prompt {
            let max = config.max_system_prompt_chars;
            if max == 0 && !prompt.is_empty() {
                return Err(Error::BadRequest(
                    "this server does not let conversations set a system prompt".into(),
                ));
            }
            if prompt.chars().count() > max {
                return Err(Error::BadRequest(format!(
                    "system_prompt is longer than {max} characters"
                )));
            }
        }
        Ok(change)
    }

    /// `archive_conversation`: moves it into `who`'s archive or out of it (theirs only).
    pub async fn archive_conversation(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        archived: bool,
    ) -> Result<(), Error> {
        self.authorize(who, conversation).await?;
        if !self
            .shared
            .stores
            .conversations()
            .set_archived(conversation, &who.user_id, archived)
            .await?
        {
            // Access through the policy alone (an admin's) puts nothing in their list.
            return Err(Error::Forbidden(
                "only a member may archive this conversation",
            ));
        }
        Ok(())
    }

    /// `remove_member`: the owner (or an admin) removes a member, or a member removes
    /// themself (leaving for good). The creator cannot be removed. Access ends at once; the removed user is
    /// told with `removed`, which also takes their connections out of the room.
    pub async fn remove_member(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), Error> {
        let info = self.authorize(who, conversation).await?;
        let owner = who.user_id == info.created_by || who.is_admin();
        if *user != who.user_id && !owner {
            return Err(Error::Forbidden(
                "only the conversation's owner may remove other members",
            ));
        }
        if *user == info.created_by {
            return Err(Error::BadRequest(
                "the conversation's owner cannot be removed; delete it instead".into(),
            ));
        }
        if !self
            .shared
            .stores
            .conversations()
            .remove_member(conversation, user)
            .await?
        {
            return Err(Error::NotFound("no such member"));
        }
        self.notify(
            Notice::Removed(Removed {
                conversation_id: conversation.clone(),
                removed_by: who.user_id.clone(),
            }),
            vec![user.clone()],
        )
        .await;
        // The members left see the change in their members panels.
        self.tell_updated(&info, Some(&who.user_id)).await;
        Ok(())
    }

    /// `delete_conversation`: its owner or an admin deletes it. From the first step on,
    /// nobody can enter it again (its id is never reused); then a running answer is
    /// stopped and awaited, queued sends and a pending approval dropped, its history (every
    /// branch) and, unless the app keeps them, its files removed; the members are told with
    /// `conversation_deleted`. Usage already counted stays counted.
    pub async fn delete_conversation(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<(), Error> {
        let info = self.authorize(who, conversation).await?;
        if who.user_id != info.created_by && !who.is_admin() {
            return Err(Error::Forbidden(
                "only the conversation's owner or an admin may delete it",
            ));
        }
        let stores = &self.shared.stores;
        let members = stores.conversations().members(conversation).await?;
        if !stores
            .conversations()
            .delete_conversation(conversation)
            .await?
        {
            return Err(Error::NotFound("no such conversation"));
        }
        // The record is gone: no new answer, join or read gets in. What is left is removed
        // below; a failure there is logged and reported, and the rest still goes.
        let mut failed = None;
        let mut note = |what: &str, e: Error| {
            tracing::error!(error = %e, %conversation, "deleting a conversation: could not remove its {what}");
            failed.get_or_insert(e);
        };
        if let Err(e) = self.stop_for_delete(conversation).await {
            note("running answer", e);
        }
        match stores.send_queue().queued_sends(conversation).await {
            Ok(queued) => {
                for send in queued {
                    if let Err(e) = stores
                        .send_queue()
                        .remove_queued(conversation, &send.stream_id)
                        .await
                    {
                        note("queued sends", e.into());
                    }
                }
            }
            Err(e) => note("queued sends", e.into()),
        }
        match stores.approvals().pending_approval(conversation).await {
            Ok(Some(pending)) => {
                if let Err(e) = stores
                    .approvals()
                    .remove_approval(&pending.request.approval_id)
                    .await
                {
                    note("pending approval", e.into());
                }
            }
            Ok(None) => {}
            Err(e) => note("pending approval", e.into()),
        }
        if let Err(e) = stores.history().delete_history(conversation).await {
            note("history", e.into());
        }
        if let Some(files) = &self.shared.files
            && !self.shared.config.keep_files_on_delete
            && let Err(e) = files.delete_conversation_files(conversation).await
        {
            note("files", e.into());
        }
        self.notify(
            Notice::ConversationDeleted(ConversationDeleted {
                conversation_id: conversation.clone(),
                deleted_by: who.user_id.clone(),
            }),
            members,
        )
        .await;
        metrics::counter!("marie_conversations_deleted_total").increment(1);
        match failed {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Stops the answer running in a conversation being deleted and waits until it has
    /// ended (its partial answer stored, so that deleting the history comes after it), for
    /// up to the answer lease.
    async fn stop_for_delete(&self, conversation: &ConversationId) -> Result<(), Error> {
        if self.cancel_running(conversation, None).await?.is_none() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.answer_lease();
        let mut pause = Duration::from_millis(5);
        // Polled, as `interrupt` does: the answer may run on another node.
        while self.running_answer(conversation).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Internal(
                    "the conversation's answer did not stop in time",
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Tells every member that `info`'s conversation changed (`conversation_updated`), by
    /// `by` (`None`: the server, naming it).
    pub(super) async fn tell_updated(&self, info: &ConversationInfo, by: Option<&UserId>) {
        let updated = ConversationUpdated::of(info, by.cloned());
        self.notify_members(Notice::ConversationUpdated(updated))
            .await;
    }

    /// Tells every member of the notice's conversation.
    pub(super) async fn notify_members(&self, notice: Notice) {
        match self
            .shared
            .stores
            .conversations()
            .members(notice.conversation_id())
            .await
        {
            Ok(members) => self.notify(notice, members).await,
            Err(e) => {
                tracing::warn!(error = %e, notice = notice.name(), "could not read the members to tell")
            }
        }
    }

    /// Tells `users`; a sink that fails is logged, never fatal: the change is made.
    async fn notify(&self, notice: Notice, users: Vec<UserId>) {
        let name = notice.name();
        if let Err(e) = self.shared.sink.notify(notice, users).await {
            tracing::warn!(error = %e, notice = name, "could not deliver a notice");
        }
    }
}
