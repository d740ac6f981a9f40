//! The PostgreSQL the SQL tests run against: `MARIE_TEST_POSTGRES_URL`, by default
//! postgres://postgres@127.0.0.1:5432/postgres (`scripts/services.sh ensure_postgres` starts
//! one), each test in a schema of its own. A PostgreSQL that does not answer fails the test
//! that needs it, loudly: none is skipped.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use marie_adapters::SqlStore;
use sqlx::Connection;

pub fn postgres_url() -> String {
    std::env::var("MARIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema of its own in the PostgreSQL of `MARIE_TEST_POSTGRES_URL`, made the store's
/// `search_path`; dropped with everything in it by [`drop_all`](Self::drop_all).
pub struct Schema(pub String);

impl Schema {
    async fn admin() -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&postgres_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL must answer on MARIE_TEST_POSTGRES_URL (default \
                     postgres://postgres@127.0.0.1:5432/postgres; scripts/services.sh \
                     ensure_postgres starts one): {e}"
                )
            })
    }

    pub async fn create(test: &str) -> Self {
        // Identifiers are at most 63 bytes.
        let test: String = test.chars().take(30).collect();
        let name = format!("marie_{test}_{:016x}", rand::random::<u64>());
        let mut admin = Self::admin().await;
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        Self(name)
    }

    /// The test database's URL, with this schema first on the search path.
    pub fn url(&self) -> String {
        let base = postgres_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options[search_path]={}", self.0)
    }

    /// A store in this schema (its tables made by the migrations).
    pub async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.url()).await.unwrap_or_else(|e| {
            panic!("PostgreSQL must answer on MARIE_TEST_POSTGRES_URL: {e}");
        })
    }

    pub async fn drop_all(&self) {
        let mut admin = Self::admin().await;
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.0))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
