//! SAML 1.1 ticket validation (CAS 3.0.3 §4, `/samlValidate`): the SOAP request carries the
//! service ticket as `samlp:AssertionArtifact`; the answer is a SAML 1.1 `Response` with an
//! assertion for `TARGET`, the user as `NameIdentifier`, and the attributes.
//!
//! Security: the request is parsed with quick-xml, which expands no entity; a document type
//! declaration (`<!DOCTYPE …>`, the door to entity expansion and external entities) is refused
//! outright, as are several artifacts.

use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::Authentication;
use super::render::escape_xml;
use crate::clock::{from_unix, rfc3339};

/// Why a SAML request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlRequestError {
    NotXml(String),
    DocumentType,
    NoArtifact,
    SeveralArtifacts,
}

impl std::fmt::Display for SamlRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotXml(e) => write!(f, "the request is not well-formed XML: {e}"),
            Self::DocumentType => f.write_str("document type declarations are not accepted"),
            Self::NoArtifact => f.write_str("the request has no samlp:AssertionArtifact"),
            Self::SeveralArtifacts => f.write_str("the request has several artifacts"),
        }
    }
}

/// The service ticket of a `/samlValidate` request (§4.2.1).
pub fn artifact_of(body: &str) -> Result<String, SamlRequestError> {
    let mut reader = Reader::from_str(body);
    let mut inside = false;
    let mut found: Option<String> = None;
    loop {
        match reader.read_event() {
            Err(e) => return Err(SamlRequestError::NotXml(e.to_string())),
            Ok(Event::Eof) => break,
            Ok(Event::DocType(_)) => return Err(SamlRequestError::DocumentType),
            Ok(Event::Start(start)) if start.local_name().as_ref() == b"AssertionArtifact" => {
                if found.is_some() {
                    return Err(SamlRequestError::SeveralArtifacts);
                }
                inside = true;
                found = Some(String::new());
            }
            Ok(Event::End(end)) if end.local_name().as_ref() == b"AssertionArtifact" => {
                inside = false;
            }
            // quick-xml reports `&…;` separately and expands nothing: only XML's own five
            // entities and character references are understood here.
            Ok(Event::GeneralRef(reference)) if inside => {
                let name = reference
                    .decode()
                    .map_err(|e| SamlRequestError::NotXml(e.to_string()))?;
                let c = match name.as_ref() {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    other => other
                        .strip_prefix("#x")
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                        .or_else(|| other.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                match (c, found.as_mut()) {
                    (Some(c), Some(value)) => value.push(c),
                    _ => {
                        return Err(SamlRequestError::NotXml(format!("unknown entity &{name};")));
                    }
                }
            }
            Ok(Event::Text(text)) if inside => {
                let text = text
                    .decode()
                    .map_err(|e| SamlRequestError::NotXml(e.to_string()))?;
                if let Some(value) = found.as_mut() {
                    value.push_str(&text);
                }
            }
            Ok(_) => {}
        }
    }
    match found.map(|v| v.trim().to_string()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(SamlRequestError::NoArtifact),
    }
}

const ENVELOPE_OPEN: &str = "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Header/><SOAP-ENV:Body>";
const ENVELOPE_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";
const RESPONSE_NS: &str = "xmlns=\"urn:oasis:names:tc:SAML:1.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:1.0:assertion\" xmlns:samlp=\"urn:oasis:names:tc:SAML:1.0:protocol\"";
const ARTIFACT: &str = "urn:oasis:names:tc:SAML:1.0:cm:artifact";

/// What a response needs besides the authentication.
#[derive(Debug, Clone)]
pub struct SamlContext<'a> {
    pub response_id: &'a str,
    pub assertion_id: &'a str,
    /// The issuer: the host of the public URL.
    pub issuer: &'a str,
    /// `TARGET`.
    pub audience: &'a str,
    pub now: i64,
    /// When the user typed the password.
    pub auth_time: i64,
}

/// A successful validation (§4.2.2).
pub fn success(auth: &Authentication, ctx: &SamlContext<'_>) -> String {
    let now = rfc3339(from_unix(ctx.now));
    let until = rfc3339(from_unix(ctx.now + 30));
    let subject = format!(
        "<Subject><NameIdentifier>{}</NameIdentifier><SubjectConfirmation><ConfirmationMethod>{ARTIFACT}</ConfirmationMethod></SubjectConfirmation></Subject>",
        escape_xml(&auth.user)
    );
    let mut out = String::from(ENVELOPE_OPEN);
    let _ = write!(
        out,
        "<Response {RESPONSE_NS} IssueInstant=\"{now}\" MajorVersion=\"1\" MinorVersion=\"1\" Recipient=\"{}\" ResponseID=\"{}\">\
         <Status><StatusCode Value=\"samlp:Success\"></StatusCode></Status>\
         <Assertion xmlns=\"urn:oasis:names:tc:SAML:1.0:assertion\" AssertionID=\"{}\" IssueInstant=\"{now}\" Issuer=\"{}\" MajorVersion=\"1\" MinorVersion=\"1\">\
         <Conditions NotBefore=\"{now}\" NotOnOrAfter=\"{until}\"><AudienceRestrictionCondition><Audience>{}</Audience></AudienceRestrictionCondition></Conditions>",
        escape_xml(ctx.audience),
        escape_xml(ctx.response_id),
        escape_xml(ctx.assertion_id),
        escape_xml(ctx.issuer),
        escape_xml(ctx.audience),
    );
    if !auth.attributes.is_empty() {
        out.push_str("<AttributeStatement>");
        out.push_str(&subject);
        for (name, values) in &auth.attributes {
            let _ = write!(
                out,
                "<Attribute AttributeName=\"{}\" AttributeNamespace=\"http://www.ja-sig.org/products/cas/\">",
                escape_xml(name)
            );
            for value in values {
                let _ = write!(
                    out,
                    "<AttributeValue>{}</AttributeValue>",
                    escape_xml(value)
                );
            }
            out.push_str("</Attribute>");
        }
        out.push_str("</AttributeStatement>");
    }
    let _ = write!(
        out,
        "<AuthenticationStatement AuthenticationInstant=\"{}\" AuthenticationMethod=\"urn:oasis:names:tc:SAML:1.0:am:password\">{subject}</AuthenticationStatement></Assertion></Response>",
        rfc3339(from_unix(ctx.auth_time))
    );
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// A refusal: `samlp:Requester` for a bad request, `samlp:Responder` for a ticket or service that
/// did not validate.
pub fn failure(requester: bool, message: &str, ctx: &SamlContext<'_>) -> String {
    format!(
        "{ENVELOPE_OPEN}<Response {RESPONSE_NS} IssueInstant=\"{}\" MajorVersion=\"1\" MinorVersion=\"1\" Recipient=\"{}\" ResponseID=\"{}\">\
         <Status><StatusCode Value=\"{}\"></StatusCode><StatusMessage>{}</StatusMessage></Status></Response>{ENVELOPE_CLOSE}",
        rfc3339(from_unix(ctx.now)),
        escape_xml(ctx.audience),
        escape_xml(ctx.response_id),
        if requester {
            "samlp:Requester"
        } else {
            "samlp:Responder"
        },
        escape_xml(message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Header/><SOAP-ENV:Body>
<samlp:Request xmlns:samlp="urn:oasis:names:tc:SAML:1.0:protocol" MajorVersion="1" MinorVersion="1" RequestID="_1" IssueInstant="2002-06-19T17:03:44.022Z">
<samlp:AssertionArtifact>
  ST-0123abc
</samlp:AssertionArtifact>
</samlp:Request></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

    #[test]
    fn the_artifact_is_read_and_dtds_refused() {
        assert_eq!(artifact_of(REQUEST).unwrap(), "ST-0123abc");
        let dtd = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{REQUEST}"
        );
        assert_eq!(artifact_of(&dtd), Err(SamlRequestError::DocumentType));
        assert_eq!(
            artifact_of(
                "<a><AssertionArtifact>ST-1</AssertionArtifact><AssertionArtifact>ST-2</AssertionArtifact></a>"
            ),
            Err(SamlRequestError::SeveralArtifacts)
        );
        assert_eq!(artifact_of("<a></a>"), Err(SamlRequestError::NoArtifact));
        assert!(matches!(
            artifact_of("<a><b></a>"),
            Err(SamlRequestError::NotXml(_))
        ));
        assert_eq!(
            artifact_of("<a><AssertionArtifact>&lt;x&gt;&#65;</AssertionArtifact></a>").unwrap(),
            "<x>A",
            "entities of XML itself are decoded"
        );
        assert!(matches!(
            artifact_of("<a><AssertionArtifact>&xxe;</AssertionArtifact></a>"),
            Err(SamlRequestError::NotXml(_))
        ));
    }
}
