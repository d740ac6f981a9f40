//! [`JwtAuthenticator`]: bearer JWTs validated with `jsonwebtoken`.

use std::collections::HashSet;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use marie_core::{AuthError, Authenticator, Credentials, Identity, UserId};
use serde::Deserialize;

/// An [`Authenticator`] for JWTs: the user id from `sub`, roles from a claim (`roles` by
/// default) holding an array of strings.
///
/// `exp` is required; `nbf` is checked when present; the algorithm list is pinned (a token
/// signed with another algorithm, `none` included, is refused); 30 seconds of leeway.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("roles_claim", &self.roles_claim)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// Any key and one pinned algorithm (RS256 or ES256 keys from PEM, for instance).
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        Self {
            key,
            validation,
            roles_claim: "roles".into(),
        }
    }

    /// Requires `aud` to be one of `audiences`.
    pub fn audience(mut self, audiences: &[&str]) -> Self {
        self.validation.set_audience(audiences);
        self
    }

    /// Requires `iss` to be one of `issuers`.
    pub fn issuer(mut self, issuers: &[&str]) -> Self {
        self.validation.set_issuer(issuers);
        self
    }

    /// Reads roles from `claim` instead of `roles`.
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthError> {
        if credentials.token().is_empty() {
            return Err(AuthError::MissingCredentials);
        }
        let data = decode::<Claims>(credentials.token(), &self.key, &self.validation)
            .map_err(|e| AuthError::InvalidCredentials(e.kind_description()))?;
        let user_id = UserId::parse(data.claims.sub)
            .map_err(|_| AuthError::InvalidCredentials("`sub` is not a valid user id".into()))?;
        let roles = match data.claims.rest.get(&self.roles_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    AuthError::InvalidCredentials("roles claim must hold strings".into())
                })?,
            Some(_) => {
                return Err(AuthError::InvalidCredentials(
                    "roles claim must be an array".into(),
                ));
            }
        };
        Ok(Identity { user_id, roles })
    }
}

/// A short, token-free description of why a JWT was refused.
trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for jsonwebtoken::errors::Error {
    fn kind_description(&self) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::ExpiredSignature => "token expired".into(),
            K::ImmatureSignature => "token not yet valid".into(),
            K::InvalidSignature => "bad signature".into(),
            K::InvalidAlgorithm => "algorithm not allowed".into(),
            K::InvalidAudience => "wrong audience".into(),
            K::InvalidIssuer => "wrong issuer".into(),
            K::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
            _ => "malformed token".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn token(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        (marie_core::now_millis() / 1000) as i64 + secs
    }

    #[tokio::test]
    async fn valid_token_gives_identity_with_roles() {
        let auth = JwtAuthenticator::hs256(b"s3cret");
        let t = token(
            json!({"sub": "alice", "exp": exp_in(60), "roles": ["admin"]}),
            Algorithm::HS256,
            b"s3cret",
        );
        let id = auth.authenticate(&Credentials::bearer(t)).await.unwrap();
        assert_eq!(id.user_id.as_str(), "alice");
        assert!(id.is_admin());
    }

    #[tokio::test]
    async fn bad_tokens_are_refused() {
        let auth = JwtAuthenticator::hs256(b"s3cret");
        let cases = [
            token(
                json!({"sub": "a", "exp": exp_in(60)}),
                Algorithm::HS256,
                b"other",
            ),
            token(
                json!({"sub": "a", "exp": exp_in(-3600)}),
                Algorithm::HS256,
                b"s3cret",
            ),
            token(json!({"sub": "a"}), Algorithm::HS256, b"s3cret"),
            token(json!({"exp": exp_in(60)}), Algorithm::HS256, b"s3cret"),
            token(
                json!({"sub": "a", "exp": "soon"}),
                Algorithm::HS256,
                b"s3cret",
            ),
            token(
                json!({"sub": "a", "exp": exp_in(60)}),
                Algorithm::HS384,
                b"s3cret",
            ),
            token(
                json!({"sub": "a", "exp": exp_in(60), "nbf": exp_in(3600)}),
                Algorithm::HS256,
                b"s3cret",
            ),
            token(
                json!({"sub": "a b", "exp": exp_in(60)}),
                Algorithm::HS256,
                b"s3cret",
            ),
            "not.a.jwt".to_owned(),
        ];
        for (i, t) in cases.into_iter().enumerate() {
            let r = auth.authenticate(&Credentials::bearer(t)).await;
            assert!(r.is_err(), "case {i} should be refused, got {r:?}");
        }
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"sub":"a","exp":<far future>} . (no signature)
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = "eyJzdWIiOiJhIiwiZXhwIjo0MTAyNDQ0ODAwfQ";
        let auth = JwtAuthenticator::hs256(b"s3cret");
        let r = auth
            .authenticate(&Credentials::bearer(format!("{header}.{claims}.")))
            .await;
        assert!(r.is_err());
    }
}
