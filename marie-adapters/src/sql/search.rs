//! Searching message text: the full-text index behind `list_conversations {query}` (a
//! conversation matches when its title holds the text or one of its messages holds every
//! word of it). The two databases index text differently, so this is the one part of the
//! schema made in Rust rather than by the portable migrations.
//!
//! - SQLite: an FTS5 table, `marie_messages_fts (content, conversation_id UNINDEXED)`,
//!   kept by triggers on `marie_messages` (its rows are keyed by the message's rowid). It
//!   holds a copy of the text: the conversation is read from the index itself, so a
//!   `VACUUM` that renumbers `marie_messages` cannot make a search name the wrong
//!   conversation (run `INSERT INTO marie_messages_fts(marie_messages_fts)
//!   VALUES('rebuild')` after one, or deleted text may still be found in conversations the
//!   user can no longer list).
//! - PostgreSQL: a GIN index on `to_tsvector('simple', content)`.
//!
//! Words are compared whole-word-prefix (`borrow` finds "borrowed"), without stemming or
//! stop words, in any language (`simple` in PostgreSQL, `unicode61` in SQLite).

use sqlx::{AnyPool, Executor};

use super::Backend;

/// The most words of a search that are looked up in message text.
const MAX_WORDS: usize = 8;

/// Creates the index, and fills it from the messages already stored when it is new.
pub(super) async fn ensure_index(pool: &AnyPool, backend: Backend) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'marie_messages_fts'",
            )
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                tx.execute(
                    "CREATE VIRTUAL TABLE marie_messages_fts USING fts5(\
                     content, conversation_id UNINDEXED, tokenize = 'unicode61');
                     INSERT INTO marie_messages_fts (rowid, content, conversation_id) \
                     SELECT rowid, content, conversation_id FROM marie_messages;
                     CREATE TRIGGER marie_messages_fts_insert AFTER INSERT ON marie_messages BEGIN
                       INSERT INTO marie_messages_fts (rowid, content, conversation_id)
                       VALUES (new.rowid, new.content, new.conversation_id);
                     END;
                     CREATE TRIGGER marie_messages_fts_delete AFTER DELETE ON marie_messages BEGIN
                       DELETE FROM marie_messages_fts WHERE rowid = old.rowid;
                     END;
                     CREATE TRIGGER marie_messages_fts_update AFTER UPDATE OF content ON marie_messages BEGIN
                       UPDATE marie_messages_fts SET content = new.content WHERE rowid = old.rowid;
                     END;",
                )
                .await?;
            }
            tx.commit().await
        }
        Backend::Postgres => {
            // Two nodes starting at once may both try: the second waits for the first's
            // lock and then finds the index there.
            pool.execute(
                "CREATE INDEX IF NOT EXISTS marie_messages_fts ON marie_messages \
                 USING GIN (to_tsvector('simple', content))",
            )
            .await
            .map(drop)
        }
    }
}

/// The words of `text` as the database's full-text query: every word, each as a prefix;
/// `None` when `text` has no word (then only titles are searched).
pub(super) fn text_query(text: &str, backend: Backend) -> Option<String> {
    // Only letters and digits reach the query language: nothing a user types can be
    // read as its syntax.
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(match backend {
        Backend::Sqlite => words
            .iter()
            .map(|w| format!("\"{w}\"*"))
            .collect::<Vec<_>>()
            .join(" "),
        Backend::Postgres => words
            .iter()
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & "),
    })
}

/// The condition that conversation `c` has a message matching the query bound as `$n`.
pub(super) fn text_condition(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!(
            "c.conversation_id IN (SELECT conversation_id FROM marie_messages_fts \
             WHERE marie_messages_fts MATCH ${n})"
        ),
        Backend::Postgres => format!(
            "c.conversation_id IN (SELECT conversation_id FROM marie_messages \
             WHERE to_tsvector('simple', content) @@ to_tsquery('simple', ${n}))"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_reach_the_query_language() {
        assert_eq!(
            text_query("Borrow-checker \"x\" OR *", Backend::Sqlite).as_deref(),
            Some("\"borrow\"* \"checker\"* \"x\"* \"or\"*")
        );
        assert_eq!(
            text_query("naïve & café:*", Backend::Postgres).as_deref(),
            Some("naïve:* & café:*")
        );
        assert_eq!(text_query(" -- ' ", Backend::Sqlite), None);
    }
}
