//! Claims by scope (OIDC Core §5.4), from the same attribute values as CAS (DESIGN.md §7).

use serde_json::{Value, json};

use super::Claims;
use crate::accounts::AccountRecord;
use crate::accounts::attributes::Attributes;

/// The SupAnn / eduPerson attributes released with the `supann` scope; multi-valued ones as
/// arrays.
const SUPANN: &[(&str, bool)] = &[
    ("uid", false),
    ("eduPersonPrincipalName", false),
    ("eduPersonAffiliation", true),
    ("eduPersonPrimaryAffiliation", false),
    ("supannEtuId", false),
    ("supannEmpId", false),
    ("supannEntiteAffectation", true),
];

/// The user's claims for `scopes`: `sub` always; `profile` (name, given_name, family_name,
/// preferred_username = the login, locale); `email` (the institutional address, verified);
/// `phone` (the confirmed recovery phone, if any); `supann`.
pub fn for_scopes(
    scopes: &[String],
    account: &AccountRecord,
    attributes: &Attributes,
    phone: Option<&str>,
    locale: &str,
) -> Claims {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let first = |name: &str| {
        attributes
            .get(name)
            .and_then(|v| v.first())
            .map(|v| Value::String(v.clone()))
    };
    let mut out = Claims::new();
    out.insert("sub".into(), json!(account.id));
    if has("profile") {
        let mut put = |claim: &str, value: Option<Value>| {
            if let Some(value) = value {
                out.insert(claim.into(), value);
            }
        };
        put("name", first("displayName"));
        put("given_name", first("givenName"));
        put("family_name", first("sn"));
        put("preferred_username", Some(json!(account.login)));
        put("locale", Some(json!(locale)));
    }
    if has("email")
        && let Some(mail) = first("mail")
    {
        out.insert("email".into(), mail);
        // The institutional address: Sésame made it, so it is the user's.
        out.insert("email_verified".into(), json!(true));
    }
    if has("phone")
        && let Some(phone) = phone
    {
        out.insert("phone_number".into(), json!(phone));
        out.insert("phone_number_verified".into(), json!(true));
    }
    if has("supann") {
        for (name, multi) in SUPANN {
            if let Some(values) = attributes.get(*name) {
                let value = if *multi {
                    json!(values)
                } else {
                    json!(values.first())
                };
                out.insert((*name).to_string(), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountState;

    fn account() -> AccountRecord {
        AccountRecord {
            id: "acc-1".into(),
            login: "ana.menard".into(),
            state: AccountState::Active,
            first_name: "Ana".into(),
            last_name: "Ménard".into(),
            birth_date: "2005-04-02".into(),
            person_key: "k".into(),
        }
    }

    fn attributes() -> Attributes {
        crate::accounts::attributes::compute(
            &account(),
            Some(&crate::accounts::StudentRecord {
                dossier_number: "22001234".into(),
                account_id: "acc-1".into(),
                component: "UFR Sciences".into(),
                enrolment_year: 2026,
                enrolment_email: None,
            }),
            None,
            "etu.univ.fr",
            "univ.fr",
        )
    }

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn openid_alone_releases_only_the_subject() {
        let claims = for_scopes(&scopes(&["openid"]), &account(), &attributes(), None, "fr");
        assert_eq!(claims.keys().collect::<Vec<_>>(), ["sub"]);
        assert_eq!(claims["sub"], "acc-1");
    }

    #[test]
    fn each_scope_releases_its_claims() {
        let claims = for_scopes(
            &scopes(&["openid", "profile", "email", "phone", "supann"]),
            &account(),
            &attributes(),
            Some("+33612345678"),
            "fr",
        );
        assert_eq!(claims["preferred_username"], "ana.menard");
        assert_eq!(claims["given_name"], "Ana");
        assert_eq!(claims["family_name"], "Ménard");
        assert_eq!(claims["name"], "Ana Ménard");
        assert_eq!(claims["email"], "ana.menard@etu.univ.fr");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["phone_number"], "+33612345678");
        assert_eq!(claims["supannEtuId"], "22001234");
        assert_eq!(claims["eduPersonAffiliation"], json!(["student", "member"]));
        let no_phone = for_scopes(
            &scopes(&["openid", "phone"]),
            &account(),
            &attributes(),
            None,
            "fr",
        );
        assert!(!no_phone.contains_key("phone_number"));
    }
}
