//! The discovery document (OpenID Connect Discovery 1.0 §3), built with `openidconnect`'s
//! provider-metadata type, plus the metadata of RP-Initiated Logout 1.0 §2.1, Back-Channel
//! Logout 1.0 §2.1, RFC 7009, RFC 7662, RFC 7636 §6.2 and RFC 9207 §3.

use openidconnect::core::{
    CoreClaimName, CoreClientAuthMethod, CoreGrantType, CoreJwsSigningAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, AuthenticationContextClass, IssuerUrl, JsonWebKeySetUrl,
    LanguageTag, ProviderMetadata, ResponseTypes, Scope, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use super::{ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR};
use crate::relying_parties::clients::KNOWN_SCOPES;

/// Metadata beyond OIDC Discovery's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraMetadata {
    pub end_session_endpoint: String,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
    pub frontchannel_logout_supported: bool,
    pub authorization_response_iss_parameter_supported: bool,
    pub prompt_values_supported: Vec<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    openidconnect::core::CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    openidconnect::core::CoreClaimType,
    CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The claims Sésame can release (by scope, `claims::for_scopes`) and put in ID tokens.
const CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "locale",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "uid",
    "eduPersonPrincipalName",
    "eduPersonAffiliation",
    "eduPersonPrimaryAffiliation",
    "supannEtuId",
    "supannEmpId",
    "supannEntiteAffectation",
];

/// The document for `issuer` (no trailing slash): every endpoint is `issuer` + `/oidc/…`.
pub fn document(issuer: &str) -> serde_json::Value {
    let at = |path: &str| format!("{issuer}{path}");
    let secret_methods = vec![
        "client_secret_basic".to_string(),
        "client_secret_post".to_string(),
    ];
    let extra = ExtraMetadata {
        end_session_endpoint: at("/oidc/logout"),
        revocation_endpoint: at("/oidc/revoke"),
        revocation_endpoint_auth_methods_supported: {
            let mut m = secret_methods.clone();
            m.push("none".into());
            m
        },
        introspection_endpoint: at("/oidc/introspect"),
        introspection_endpoint_auth_methods_supported: secret_methods,
        code_challenge_methods_supported: vec!["S256".into()],
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        frontchannel_logout_supported: false,
        authorization_response_iss_parameter_supported: true,
        prompt_values_supported: ["none", "login", "consent", "select_account"]
            .map(String::from)
            .to_vec(),
    };
    let built = (|| -> Result<Metadata, url::ParseError> {
        Ok(Metadata::new(
            IssuerUrl::new(issuer.to_string())?,
            AuthUrl::new(at("/oidc/authorize"))?,
            JsonWebKeySetUrl::new(at("/oidc/jwks"))?,
            vec![ResponseTypes::new(vec![CoreResponseType::Code])],
            vec![CoreSubjectIdentifierType::Public],
            vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EdDsa,
            ],
            extra,
        )
        .set_token_endpoint(Some(TokenUrl::new(at("/oidc/token"))?))
        .set_userinfo_endpoint(Some(UserInfoUrl::new(at("/oidc/userinfo"))?))
        .set_scopes_supported(Some(
            KNOWN_SCOPES
                .iter()
                .map(|s| Scope::new(s.to_string()))
                .collect(),
        ))
        .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
        .set_grant_types_supported(Some(vec![
            CoreGrantType::AuthorizationCode,
            CoreGrantType::RefreshToken,
            CoreGrantType::ClientCredentials,
        ]))
        .set_acr_values_supported(Some(vec![
            AuthenticationContextClass::new(ACR_SINGLE_FACTOR.into()),
            AuthenticationContextClass::new(ACR_MULTI_FACTOR.into()),
        ]))
        .set_token_endpoint_auth_methods_supported(Some(vec![
            CoreClientAuthMethod::ClientSecretBasic,
            CoreClientAuthMethod::ClientSecretPost,
            CoreClientAuthMethod::None,
        ]))
        .set_claims_supported(Some(
            CLAIMS
                .iter()
                .map(|c| CoreClaimName::new(c.to_string()))
                .collect(),
        ))
        .set_ui_locales_supported(Some(vec![
            LanguageTag::new("fr".into()),
            LanguageTag::new("en".into()),
        ]))
        .set_claims_parameter_supported(Some(false))
        .set_request_parameter_supported(Some(false))
        .set_request_uri_parameter_supported(Some(false)))
    })();
    match built.map(serde_json::to_value) {
        Ok(Ok(value)) => value,
        // The issuer comes from a checked configuration URL; this cannot happen.
        _ => serde_json::json!({"issuer": issuer}),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_endpoint_hangs_off_the_issuer() {
        let doc = super::document("https://sso.univ.fr");
        assert_eq!(doc["issuer"], "https://sso.univ.fr");
        assert_eq!(doc["token_endpoint"], "https://sso.univ.fr/oidc/token");
        assert_eq!(
            doc["end_session_endpoint"],
            "https://sso.univ.fr/oidc/logout"
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["backchannel_logout_supported"], true);
    }
}
