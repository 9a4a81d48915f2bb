//! A minimal browser over the in-process router: keeps cookies, reads the CSRF field of forms.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request};

use super::{TestApp, TestResponse};

pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
    pub language: &'static str,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
            language: "fr",
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, response: &TestResponse) {
        for value in response.headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> TestResponse {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("cookie", self.cookie_header())
            .header("accept-language", self.language)
            .body(Body::empty())
            .unwrap();
        let response = self.app.send(request, None).await;
        self.remember(&response);
        response
    }

    /// Posts a form; `csrf` is added from the cookie unless the fields set it.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let mut pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !fields.iter().any(|(k, _)| *k == "csrf")
            && let Some(token) = self.cookies.get("sesame-csrf")
        {
            pairs.push(("csrf".into(), token.clone()));
        }
        let body = serde_urlencoded_pairs(&pairs);
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("cookie", self.cookie_header())
            .header("accept-language", self.language)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let response = self.app.send(request, None).await;
        self.remember(&response);
        response
    }
}

fn serde_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
