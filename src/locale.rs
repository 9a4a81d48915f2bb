//! The languages Sésame speaks to people: French by default, English on request. Pages, mails
//! and SMS all choose their texts from a [`Locale`]; the web layer negotiates it from the request
//! (`?lang=`, then `Accept-Language`).

/// A supported page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    Fr,
    En,
}

impl Locale {
    pub fn tag(self) -> &'static str {
        match self {
            Locale::Fr => "fr",
            Locale::En => "en",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.trim();
        if primary.eq_ignore_ascii_case("fr") {
            Some(Locale::Fr)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Locale::En)
        } else {
            None
        }
    }

    /// Chooses the language: an explicit `lang` query parameter wins, then the best match of
    /// `Accept-Language` (RFC 9110 §12.5.4, quality values honoured), then French.
    pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> Self {
        if let Some(query) = query {
            for pair in query.split('&') {
                if let Some(value) = pair.strip_prefix("lang=")
                    && let Some(locale) = Self::from_tag(value)
                {
                    return locale;
                }
            }
        }
        let Some(header) = accept_language else {
            return Locale::default();
        };
        let mut best: Option<(u16, Locale)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .map(|q| (q.clamp(0.0, 1.0) * 1000.0) as u16)
                .unwrap_or(1000);
            if quality == 0 {
                continue;
            }
            if let Some(locale) = Self::from_tag(tag)
                && best.is_none_or(|(q, _)| quality > q)
            {
                best = Some((quality, locale));
            }
        }
        best.map(|(_, locale)| locale).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_is_the_default() {
        assert_eq!(Locale::negotiate(None, None), Locale::Fr);
        assert_eq!(Locale::negotiate(None, Some("de-DE, es")), Locale::Fr);
        assert_eq!(Locale::negotiate(Some("lang=xx"), None), Locale::Fr);
    }

    #[test]
    fn accept_language_quality_is_honoured() {
        assert_eq!(Locale::negotiate(None, Some("en-GB,en;q=0.9")), Locale::En);
        assert_eq!(
            Locale::negotiate(None, Some("en;q=0.5, fr;q=0.8")),
            Locale::Fr
        );
        assert_eq!(Locale::negotiate(None, Some("de, en;q=0.3")), Locale::En);
        assert_eq!(
            Locale::negotiate(None, Some("fr;q=0, en;q=0.1")),
            Locale::En
        );
    }

    #[test]
    fn the_query_parameter_wins() {
        assert_eq!(
            Locale::negotiate(Some("service=x&lang=en"), Some("fr")),
            Locale::En
        );
        assert_eq!(Locale::negotiate(Some("lang=fr"), Some("en")), Locale::Fr);
    }
}
