//! Languages of the pages: French by default, English on request (`?lang=en`, or an
//! `Accept-Language` that prefers English). Every user-facing text lives in the catalogues below,
//! one per language, so a page cannot show half its texts in another language.

pub use crate::locale::Locale;

use axum::extract::FromRequestParts;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::request::Parts;

impl<S: Send + Sync> FromRequestParts<S> for Locale {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::negotiate(
            parts.uri.query(),
            parts
                .headers
                .get(ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        ))
    }
}

/// The page texts of a language.
pub trait PageTexts {
    fn texts(self) -> &'static Texts;
}

impl PageTexts for Locale {
    fn texts(self) -> &'static Texts {
        match self {
            Locale::Fr => &FR,
            Locale::En => &EN,
        }
    }
}

/// Every text of the pages, in one language.
#[derive(Debug)]
pub struct Texts {
    pub skip_to_content: &'static str,
    pub other_language_label: &'static str,
    pub other_language_tag: &'static str,
    pub demo_banner: &'static str,
    pub home_title: &'static str,
    pub home_lead: &'static str,
    pub home_users: &'static str,
    pub home_apps: &'static str,
    pub home_operators: &'static str,
    pub footer: &'static str,
    pub error_back_home: &'static str,
    pub error_request_id: &'static str,
    pub not_found_title: &'static str,
    pub not_found_body: &'static str,
    pub internal_title: &'static str,
    pub internal_body: &'static str,
    pub wrong_host_title: &'static str,
    pub wrong_host_body: &'static str,
    pub timeout_title: &'static str,
    pub timeout_body: &'static str,
    pub too_large_title: &'static str,
    pub too_large_body: &'static str,
    pub bad_request_title: &'static str,
    pub bad_request_body: &'static str,
    pub method_title: &'static str,
    pub method_body: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_body: &'static str,
}

pub static FR: Texts = Texts {
    skip_to_content: "Aller au contenu",
    other_language_label: "English",
    other_language_tag: "en",
    demo_banner: "Démonstration : les comptes et les applications sont fictifs, et les courriels \
                  sont écrits dans le dossier des données au lieu d'être envoyés.",
    home_title: "Sésame — authentification unique",
    home_lead: "Sésame est le service d'authentification unique de l'université : \
                un seul identifiant et un seul mot de passe pour toutes vos applications.",
    home_users: "Étudiants et personnels : vos applications (Moodle, ENT, bibliothèque, \
                 emploi du temps) vous amènent ici pour vous connecter, puis vous y ramènent.",
    home_apps: "Applications : Sésame parle CAS (1, 2 et 3) et OpenID Connect.",
    home_operators: "Exploitation : l'état du service est donné par /healthz et /readyz, \
                     ses mesures par /metrics.",
    footer: "Sésame, fournisseur d'identité libre pour les universités.",
    error_back_home: "Revenir à l'accueil",
    error_request_id: "Référence de la requête",
    not_found_title: "Page introuvable",
    not_found_body: "Cette adresse ne correspond à aucune page. Vérifiez le lien, \
                     ou repartez de l'application qui vous a envoyé ici.",
    internal_title: "Erreur du service",
    internal_body: "Une erreur inattendue s'est produite ; elle a été enregistrée. \
                    Réessayez dans un instant. Si elle persiste, contactez l'assistance \
                    en donnant la référence ci-dessous.",
    wrong_host_title: "Adresse inattendue",
    wrong_host_body: "Ce service ne répond qu'à son adresse officielle :",
    timeout_title: "Délai dépassé",
    timeout_body: "La requête a pris trop de temps. Réessayez.",
    too_large_title: "Requête trop volumineuse",
    too_large_body: "Les données envoyées dépassent la taille autorisée.",
    bad_request_title: "Requête invalide",
    bad_request_body: "La requête n'a pas pu être comprise. Repartez de la page précédente.",
    method_title: "Méthode non autorisée",
    method_body: "Cette page ne s'utilise pas ainsi. Repartez de la page précédente.",
    unavailable_title: "Service momentanément indisponible",
    unavailable_body: "Le service est très sollicité ou en maintenance. Réessayez dans \
                       quelques instants.",
};

pub static EN: Texts = Texts {
    skip_to_content: "Skip to content",
    other_language_label: "Français",
    other_language_tag: "fr",
    demo_banner: "Demo: accounts and applications are fictitious, and e-mails are written to \
                  the data directory instead of being sent.",
    home_title: "Sésame — single sign-on",
    home_lead: "Sésame is the university's single sign-on service: one identifier and one \
                password for all your applications.",
    home_users: "Students and staff: your applications (Moodle, the portal, the library, the \
                 timetable) bring you here to sign in, then take you back.",
    home_apps: "Applications: Sésame speaks CAS (1, 2 and 3) and OpenID Connect.",
    home_operators: "Operations: /healthz and /readyz report the service's state, /metrics its \
                     measurements.",
    footer: "Sésame, the open-source identity provider for universities.",
    error_back_home: "Back to the home page",
    error_request_id: "Request reference",
    not_found_title: "Page not found",
    not_found_body: "No page lives at this address. Check the link, or start again from the \
                     application that sent you here.",
    internal_title: "Service error",
    internal_body: "Something unexpected went wrong; it has been recorded. Try again in a \
                    moment. If it persists, contact the helpdesk with the reference below.",
    wrong_host_title: "Unexpected address",
    wrong_host_body: "This service only answers at its official address:",
    timeout_title: "Request timed out",
    timeout_body: "The request took too long. Please try again.",
    too_large_title: "Request too large",
    too_large_body: "The data sent is larger than allowed.",
    bad_request_title: "Invalid request",
    bad_request_body: "The request could not be understood. Go back to the previous page.",
    method_title: "Method not allowed",
    method_body: "This page cannot be used that way. Go back to the previous page.",
    unavailable_title: "Service temporarily unavailable",
    unavailable_body: "The service is very busy or under maintenance. Please try again in a \
                       few moments.",
};
