//! The home page.

use axum::extract::State;
use axum::response::Html;

use crate::web::WebState;
use crate::web::errors::WebError;
use crate::web::i18n::Locale;
use crate::web::views::{HomePage, PageContext, render};

pub async fn show(State(state): State<WebState>, locale: Locale) -> Result<Html<String>, WebError> {
    let page = HomePage {
        page: PageContext::new(locale, state.demo, "/"),
    };
    render(&page)
        .map(Html)
        .map_err(|e| WebError::Internal(format!("home page: {e}")))
}
