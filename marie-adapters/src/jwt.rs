//! [`JwtAuthenticator`]: bearer JWTs validated with `jsonwebtoken`.

use std::collections::HashSet;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use marie_core::{AuthError, Authenticator, Credentials, Identity, UserId};
use serde::Deserialize;

/// An [`Authenticator`] for JWTs: the user id from `sub`, roles from a claim (`roles` by
/// default) holding an array of strings, and the token's `exp` as the identity's
/// [`expires_at`](Identity::expires_at) (the connection is ended then).
///
/// - The algorithm list is pinned: a token whose header names another algorithm (`none`
///   included, or HS256 against an RSA key) is refused. [`hs256`](Self::hs256),
///   [`rs256_pem`](Self::rs256_pem) and [`es256_pem`](Self::es256_pem) pin one algorithm;
///   [`algorithms`](Self::algorithms) pins several of the key's family.
/// - `exp` and `sub` are required; `exp` must be a number. `nbf` is checked when present.
/// - `aud` and `iss` are required and checked when configured ([`audience`](Self::audience),
///   [`issuer`](Self::issuer)); a token that carries an `aud` while no audience is
///   configured is refused (RFC 7519 section 4.1.3).
/// - 30 seconds of leeway on `exp` and `nbf` for clock skew ([`leeway`](Self::leeway)).
/// - Error messages (for logs only; clients see `unauthorized`) never contain the token.
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

/// Why a key given to [`JwtAuthenticator`] could not be used.
#[derive(Debug)]
pub struct JwtKeyError(String);

impl std::fmt::Display for JwtKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid JWT key: {}", self.0)
    }
}

impl std::error::Error for JwtKeyError {}

impl JwtAuthenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 with an RSA public key in PEM (`-----BEGIN PUBLIC KEY-----` or
    /// `-----BEGIN RSA PUBLIC KEY-----`).
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| JwtKeyError(format!("RSA public key: {e}")))?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    /// ES256 with a P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn es256_pem(public_key_pem: &[u8]) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_ec_pem(public_key_pem)
            .map_err(|e| JwtKeyError(format!("EC public key: {e}")))?;
        Ok(Self::new(key, Algorithm::ES256))
    }

    /// Any key and one pinned algorithm.
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        Self {
            key,
            validation,
            roles_claim: "roles".into(),
        }
    }

    /// Pins the accepted algorithms to `algorithms` (all of the key's family, e.g. RS256
    /// and RS384 for an RSA key). An empty list is ignored.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if !algorithms.is_empty() {
            self.validation.algorithms = algorithms.to_vec();
        }
        self
    }

    /// Seconds of clock skew allowed on `exp` and `nbf` (30 by default).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Requires `aud` to be one of `audiences`.
    pub fn audience(mut self, audiences: &[&str]) -> Self {
        self.validation.set_audience(audiences);
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Requires `iss` to be one of `issuers`.
    pub fn issuer(mut self, issuers: &[&str]) -> Self {
        self.validation.set_issuer(issuers);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Reads roles from `claim` instead of `roles`. The claim may be nested, with dots:
    /// `realm_access.roles` reads `{"realm_access": {"roles": [...]}}` (Keycloak's shape).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }

    fn roles(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<String>, AuthError> {
        let mut path = self.roles_claim.split('.');
        let first = path.next().unwrap_or_default();
        let mut value = claims.get(first);
        for part in path {
            value = value.and_then(|v| v.get(part));
        }
        match value {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    AuthError::InvalidCredentials("roles claim must hold strings".into())
                }),
            Some(_) => Err(AuthError::InvalidCredentials(
                "roles claim must be an array".into(),
            )),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
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
        let roles = self.roles(&data.claims.rest)?;
        // The connection ends at `exp` plus the leeway the token was accepted with.
        let expires_at = data
            .claims
            .exp
            .saturating_add(self.validation.leeway)
            .saturating_mul(1000);
        Ok(Identity {
            user_id,
            roles,
            expires_at: Some(expires_at),
        })
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

    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/keys/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../tests/keys/rsa_public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec_private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../tests/keys/ec_public.pem");

    fn signed(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
        encode(&Header::new(alg), &claims, key).unwrap()
    }

    #[tokio::test]
    async fn rs256_and_es256_keys_from_pem() {
        let rsa = JwtAuthenticator::rs256_pem(RSA_PUBLIC).unwrap();
        let ec = JwtAuthenticator::es256_pem(EC_PUBLIC).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let claims = json!({"sub": "alice", "exp": exp_in(60)});
        let rs = signed(claims.clone(), Algorithm::RS256, &rsa_key);
        let es = signed(claims.clone(), Algorithm::ES256, &ec_key);
        assert!(
            rsa.authenticate(&Credentials::bearer(rs.clone()))
                .await
                .is_ok()
        );
        assert!(
            ec.authenticate(&Credentials::bearer(es.clone()))
                .await
                .is_ok()
        );
        // Each key only with its own pinned algorithm.
        assert!(rsa.authenticate(&Credentials::bearer(es)).await.is_err());
        assert!(ec.authenticate(&Credentials::bearer(rs)).await.is_err());
        // RS384 with the right RSA key is still refused: not in the pinned list...
        let rs384 = signed(claims.clone(), Algorithm::RS384, &rsa_key);
        assert!(
            rsa.authenticate(&Credentials::bearer(rs384.clone()))
                .await
                .is_err()
        );
        // ...unless pinned explicitly.
        let both = JwtAuthenticator::rs256_pem(RSA_PUBLIC)
            .unwrap()
            .algorithms(&[Algorithm::RS256, Algorithm::RS384]);
        assert!(both.authenticate(&Credentials::bearer(rs384)).await.is_ok());
        // HS256 signed with the RSA public key as the secret (the classic confusion attack).
        let confused = signed(
            claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC),
        );
        assert!(
            rsa.authenticate(&Credentials::bearer(confused))
                .await
                .is_err()
        );
        assert!(JwtAuthenticator::rs256_pem(b"not a key").is_err());
    }

    #[tokio::test]
    async fn audience_and_issuer_when_configured() {
        let auth = JwtAuthenticator::hs256(b"k")
            .audience(&["marie"])
            .issuer(&["https://id.example"]);
        let ok =
            json!({"sub": "a", "exp": exp_in(60), "aud": "marie", "iss": "https://id.example"});
        let t = token(ok, Algorithm::HS256, b"k");
        assert!(auth.authenticate(&Credentials::bearer(t)).await.is_ok());
        for bad in [
            json!({"sub": "a", "exp": exp_in(60), "aud": "other", "iss": "https://id.example"}),
            json!({"sub": "a", "exp": exp_in(60), "aud": "marie", "iss": "https://evil.example"}),
            json!({"sub": "a", "exp": exp_in(60), "iss": "https://id.example"}),
            json!({"sub": "a", "exp": exp_in(60), "aud": "marie"}),
        ] {
            let t = token(bad.clone(), Algorithm::HS256, b"k");
            assert!(
                auth.authenticate(&Credentials::bearer(t)).await.is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn expiry_roles_claim_and_leeway() {
        let exp = exp_in(120);
        let auth = JwtAuthenticator::hs256(b"k")
            .roles_claim("realm_access.roles")
            .leeway(5);
        let t = token(
            json!({"sub": "a", "exp": exp, "realm_access": {"roles": ["admin"]}}),
            Algorithm::HS256,
            b"k",
        );
        let id = auth.authenticate(&Credentials::bearer(t)).await.unwrap();
        assert!(id.is_admin());
        assert_eq!(id.expires_at, Some((exp as u64 + 5) * 1000));
        // Within the leeway: still accepted; beyond it: refused.
        let t = token(
            json!({"sub": "a", "exp": exp_in(-3)}),
            Algorithm::HS256,
            b"k",
        );
        assert!(auth.authenticate(&Credentials::bearer(t)).await.is_ok());
        let t = token(
            json!({"sub": "a", "exp": exp_in(-30)}),
            Algorithm::HS256,
            b"k",
        );
        assert!(auth.authenticate(&Credentials::bearer(t)).await.is_err());
        let t = token(
            json!({"sub": "a", "exp": exp, "roles": "admin"}),
            Algorithm::HS256,
            b"k",
        );
        assert!(
            JwtAuthenticator::hs256(b"k")
                .authenticate(&Credentials::bearer(t))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn errors_never_contain_the_token() {
        let auth = JwtAuthenticator::hs256(b"s3cret");
        let t = token(
            json!({"sub": "a", "exp": exp_in(-3600)}),
            Algorithm::HS256,
            b"s3cret",
        );
        let e = auth
            .authenticate(&Credentials::bearer(t.clone()))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        for part in t.split('.') {
            assert!(!text.contains(part), "{text}");
        }
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
