//! `/demo/cas`: a CAS application inside the demo (`sesame demo` only), so a newcomer can click
//! through a real CAS login and see what an application receives. It validates its ticket
//! through the same server code as `/cas/p3/serviceValidate` and shows the answer.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::login::see_other;
use crate::cas::server::Release;
use crate::cas::{Endpoint, Format, ValidationRequest, render};
use crate::web::WebState;
use crate::web::errors::WebError;
use crate::web::i18n::Locale;
use crate::web::views::{DemoCasPage, PageContext, html_response, render as render_page};

#[derive(Debug, serde::Deserialize)]
pub struct DemoParams {
    ticket: Option<String>,
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `POST /demo/cas`: the ticket as CAS `method=POST` returns it (CAS 3.0.3 §2.1.1).
pub async fn cas_post(
    State(state): State<WebState>,
    locale: Locale,
    headers: HeaderMap,
    axum::Form(params): axum::Form<DemoParams>,
) -> Result<Response, WebError> {
    cas(State(state), locale, headers, Query(params)).await
}

pub async fn cas(
    State(state): State<WebState>,
    locale: Locale,
    _headers: HeaderMap,
    Query(params): Query<DemoParams>,
) -> Result<Response, WebError> {
    let service = format!("{}demo/cas", state.public_url);
    let login = format!("/cas/login?service={}", encode(&service));
    let Some(ticket) = params.ticket.filter(|t| !t.is_empty()) else {
        return see_other(&login, None);
    };
    let outcome = state
        .cas
        .validate(
            ValidationRequest {
                endpoint: Endpoint::ServiceValidate,
                ticket: Some(&ticket),
                service: Some(&service),
                renew: false,
            },
            Release::Cas3,
            None,
        )
        .await?;
    let (user, attributes, response) = match &outcome {
        Ok(auth) => (
            Some(auth.user.clone()),
            auth.attributes
                .iter()
                .map(|(name, values)| (name.clone(), values.join(", ")))
                .collect(),
            render::success(auth, Format::Xml),
        ),
        Err(failure) => (None, Vec::new(), render::failure(failure, Format::Xml)),
    };
    let html = render_page(&DemoCasPage {
        page: PageContext::new(locale, state.demo, "/demo/cas"),
        lang: locale.tag(),
        user,
        attributes,
        response,
        again: login,
        logout: format!("/cas/logout?service={}", encode(&service)),
    })
    .map_err(|e| WebError::Internal(format!("demo page: {e}")))?;
    Ok(html_response(html, None))
}
