//! Outbound HTTP: the calls Sésame makes to applications — CAS proxy callbacks (CAS 3.0.3
//! §2.5.4) today, single-logout and back-channel logout requests next. One client: TLS checked
//! against the web PKI roots, no redirect followed, a short time limit, so a slow or hostile
//! application cannot hold a request of ours.

use std::time::Duration;

use async_trait::async_trait;

use crate::cas::ProxyCallback;
use crate::cas::logout::LogoutDelivery;

/// Longest wait for an application.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct HttpCallbacks {
    client: reqwest::Client,
}

impl HttpCallbacks {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(crate::mail::sms::tls_config()?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl ProxyCallback for HttpCallbacks {
    async fn deliver(&self, pgt_url: &str, pgt_iou: &str, pgt_id: &str) -> bool {
        let Ok(mut url) = url::Url::parse(pgt_url) else {
            return false;
        };
        url.query_pairs_mut()
            .append_pair("pgtIou", pgt_iou)
            .append_pair("pgtId", pgt_id);
        match self.client.get(url).send().await {
            // §2.5.4: only a 200 counts; a redirect is not followed.
            Ok(response) => response.status() == reqwest::StatusCode::OK,
            Err(error) => {
                tracing::info!(error = %error.without_url(), "proxy callback failed");
                false
            }
        }
    }
}

impl HttpCallbacks {
    /// POSTs one form field; any 2xx counts, a redirect is not followed.
    async fn post_field(&self, url: &str, name: &str, value: &str) -> Result<(), String> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CACHE_CONTROL, "no-store")
            .form(&[(name, value)])
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

#[async_trait]
impl LogoutDelivery for HttpCallbacks {
    /// CAS 3.0.3 §2.3.3: a POST with the form field `logoutRequest`.
    async fn post_logout(&self, url: &str, logout_request: &str) -> Result<(), String> {
        self.post_field(url, "logoutRequest", logout_request).await
    }

    /// Back-Channel Logout 1.0 §2.5: a POST with the form field `logout_token`.
    async fn post_backchannel(&self, url: &str, logout_token: &str) -> Result<(), String> {
        self.post_field(url, "logout_token", logout_token).await
    }
}
