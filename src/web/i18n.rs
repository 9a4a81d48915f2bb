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
    pub forbidden_title: &'static str,
    pub forbidden_body: &'static str,
    pub throttled_title: &'static str,
    pub unknown_service_title: &'static str,
    pub unknown_service_body: &'static str,
    pub mfa_required_title: &'static str,
    pub mfa_required_body: &'static str,
    pub throttled_body: &'static str,
    pub activation: ActivationTexts,
    pub recovery: RecoveryTexts,
    pub login: LoginTexts,
    pub cas: CasTexts,
    pub oidc: OidcTexts,
}

/// Texts of the OpenID Connect consent page.
#[derive(Debug)]
pub struct OidcTexts {
    pub consent_title: &'static str,
    /// Followed by the application's name.
    pub consent_lead: &'static str,
    pub consent_scopes: &'static str,
    pub scope_openid: &'static str,
    pub scope_profile: &'static str,
    pub scope_email: &'static str,
    pub scope_phone: &'static str,
    pub scope_supann: &'static str,
    pub consent_remembered: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
}

impl OidcTexts {
    /// What a scope lets the application see.
    pub fn scope(&self, scope: &str) -> Option<&'static str> {
        Some(match scope {
            "openid" => self.scope_openid,
            "profile" => self.scope_profile,
            "email" => self.scope_email,
            "phone" => self.scope_phone,
            "supann" => self.scope_supann,
            _ => return None,
        })
    }
}

/// Texts of the CAS pages.
#[derive(Debug)]
pub struct CasTexts {
    /// The auto-submitted form of `method=POST`.
    pub title: &'static str,
    pub lead: &'static str,
    pub button: &'static str,
}

/// Texts of the login and logout pages.
#[derive(Debug)]
pub struct LoginTexts {
    pub title: &'static str,
    pub lead: &'static str,
    pub username_label: &'static str,
    pub username_hint: &'static str,
    pub password_label: &'static str,
    pub public_computer_label: &'static str,
    pub remember_me_label: &'static str,
    pub submit: &'static str,
    pub forgot_link: &'static str,
    pub activate_link: &'static str,
    pub rejected: &'static str,
    pub incomplete: &'static str,
    pub too_long: &'static str,
    /// `{minutes}` is replaced.
    pub locked_temporary: &'static str,
    pub locked_hard: &'static str,
    pub disabled: &'static str,
    pub signed_in_title: &'static str,
    pub signed_in_as: &'static str,
    pub logout_button: &'static str,
    pub logout_title: &'static str,
    pub logout_lead: &'static str,
    pub logged_out: &'static str,
    pub not_signed_in: &'static str,
    pub login_link: &'static str,
}

/// Texts of the forgotten-password pages.
#[derive(Debug)]
pub struct RecoveryTexts {
    pub forgot_title: &'static str,
    pub forgot_lead: &'static str,
    pub identifier_label: &'static str,
    pub identifier_hint: &'static str,
    pub send_button: &'static str,
    pub sent: &'static str,
    pub reset_title: &'static str,
    pub reset_lead: &'static str,
    pub save_button: &'static str,
    pub invalid: &'static str,
    pub done: &'static str,
    pub forgot_link: &'static str,
}

/// Texts of the activation pages.
#[derive(Debug)]
pub struct ActivationTexts {
    pub title: &'static str,
    pub steps: &'static str,
    pub start_lead: &'static str,
    pub dossier_label: &'static str,
    pub dossier_hint: &'static str,
    pub birth_date_label: &'static str,
    pub staff_legend: &'static str,
    pub code_label_staff: &'static str,
    pub continue_button: &'static str,
    pub refused: &'static str,
    pub locked: &'static str,
    pub expired: &'static str,
    pub contact_lead: &'static str,
    pub email_label: &'static str,
    pub email_hint: &'static str,
    pub phone_label: &'static str,
    pub phone_hint: &'static str,
    pub invalid_email: &'static str,
    pub institutional_email: &'static str,
    pub invalid_phone: &'static str,
    pub code_lead: &'static str,
    pub code_label: &'static str,
    pub wrong_code: &'static str,
    pub void_code: &'static str,
    pub change_address: &'static str,
    pub password_lead: &'static str,
    pub new_password_label: &'static str,
    pub confirm_label: &'static str,
    pub password_hint: &'static str,
    pub too_short: &'static str,
    pub too_long: &'static str,
    pub common: &'static str,
    pub personal: &'static str,
    pub guessable: &'static str,
    pub mismatch: &'static str,
    pub busy: &'static str,
    pub done_title: &'static str,
    pub done_lead: &'static str,
    pub done_next: &'static str,
    pub continue_link: &'static str,
    pub already_done: &'static str,
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
    unknown_service_title: "Application inconnue",
    unknown_service_body: "L'application qui vous a envoyé ici n'est pas autorisée à utiliser \
                           Sésame. Vous n'avez pas été connecté à cette application ; signalez-le \
                           à l'assistance informatique.",
    mfa_required_title: "Double authentification exigée",
    mfa_required_body: "Cette application exige une double authentification, qui n'est pas \
                        encore disponible pour votre compte. Contactez l'assistance \
                        informatique.",
    throttled_title: "Trop de tentatives",
    throttled_body: "Trop de demandes sont venues de votre connexion en peu de temps. Patientez \
                     une minute, puis réessayez.",
    forbidden_title: "Formulaire expiré",
    forbidden_body: "Ce formulaire n'est plus valable (il est trop ancien, ou les cookies sont \
                     bloqués). Revenez à la page précédente, rechargez-la et recommencez.",
    activation: ActivationTexts {
        title: "Activer mon compte",
        steps: "Étape",
        start_lead: "Pour activer votre compte étudiant, donnez votre numéro de dossier \
                     (il figure sur votre certificat de scolarité) et votre date de naissance.",
        dossier_label: "Numéro de dossier",
        dossier_hint: "8 chiffres",
        birth_date_label: "Date de naissance",
        staff_legend: "Personnel : vous avez reçu un code d'activation de l'assistance",
        code_label_staff: "Code d'activation",
        continue_button: "Continuer",
        refused: "Ces informations ne permettent pas d'activer un compte. Vérifiez-les ; \
                  si votre compte est déjà actif, connectez-vous ou utilisez « mot de passe \
                  oublié ».",
        locked: "Trop d'essais infructueux pour ce numéro de dossier. Contactez l'assistance \
                 pour le débloquer.",
        expired: "Votre activation a expiré ou n'a pas été trouvée. Recommencez depuis le début.",
        contact_lead: "Donnez une adresse électronique personnelle (pas celle de l'université) \
                       et un numéro de mobile : ils serviront à retrouver votre compte. Un code \
                       de confirmation va être envoyé à l'adresse.",
        email_label: "Adresse électronique personnelle",
        email_hint: "Par exemple prenom.nom@exemple.fr",
        phone_label: "Numéro de mobile",
        phone_hint: "Par exemple 06 12 34 56 78",
        invalid_email: "Cette adresse électronique n'est pas valide.",
        institutional_email: "Donnez une adresse personnelle, pas une adresse de l'université.",
        invalid_phone: "Ce numéro de mobile n'est pas valide.",
        code_lead: "Un code à 6 chiffres vient d'être envoyé à votre adresse. Il est valable \
                    10 minutes.",
        code_label: "Code reçu",
        wrong_code: "Ce code n'est pas le bon. Essais restants :",
        void_code: "Ce code a expiré ou a été trop souvent mal saisi. Donnez de nouveau votre \
                    adresse pour en recevoir un autre.",
        change_address: "Changer d'adresse ou recevoir un nouveau code",
        password_lead: "Choisissez votre mot de passe : au moins 12 caractères. Une phrase de \
                        plusieurs mots est facile à retenir et difficile à deviner.",
        new_password_label: "Nouveau mot de passe",
        confirm_label: "Confirmez le mot de passe",
        password_hint: "Au moins 12 caractères, sans votre nom ni votre date de naissance.",
        too_short: "Ce mot de passe est trop court : il faut au moins 12 caractères.",
        too_long: "Ce mot de passe est trop long.",
        common: "Ce mot de passe figure dans les listes de mots de passe divulgués. \
                 Choisissez-en un autre.",
        personal: "Ce mot de passe contient des informations personnelles (nom, date de \
                   naissance, numéro de dossier…).",
        guessable: "Ce mot de passe est trop facile à deviner. Ajoutez des mots.",
        mismatch: "Les deux mots de passe sont différents.",
        busy: "Le service est très sollicité. Réessayez dans quelques secondes.",
        done_title: "Votre compte est activé",
        done_lead: "Votre identifiant est :",
        continue_link: "Se connecter",
        done_next: "Utilisez-le avec votre mot de passe pour vous connecter aux applications \
                    de l'université.",
        already_done: "Cette activation est déjà terminée ou a expiré.",
    },
    recovery: RecoveryTexts {
        forgot_title: "Mot de passe oublié",
        forgot_lead: "Donnez votre identifiant (prenom.nom) ou votre adresse de l'université. \
                      Nous enverrons un lien pour choisir un nouveau mot de passe à vos adresses \
                      de secours.",
        identifier_label: "Identifiant ou adresse",
        identifier_hint: "Par exemple emilie.dupre ou emilie.dupre@etu.uca.fr",
        send_button: "Envoyer le lien",
        sent: "Si un compte correspond, un lien vient d'être envoyé à ses adresses de secours. \
               Il est valable 30 minutes. Pensez à regarder dans les courriers indésirables.",
        reset_title: "Choisir un nouveau mot de passe",
        reset_lead: "Choisissez votre nouveau mot de passe : au moins 12 caractères.",
        save_button: "Enregistrer",
        invalid: "Ce lien n'est plus valable (déjà utilisé, expiré ou remplacé par un plus \
                  récent). Vous pouvez en demander un autre.",
        done: "Votre mot de passe a été changé. Vos adresses de secours en ont été informées.",
        forgot_link: "Demander un nouveau lien",
    },
    login: LoginTexts {
        title: "Connexion",
        lead: "Connectez-vous avec votre identifiant de l'université.",
        username_label: "Identifiant",
        username_hint: "prenom.nom, ou votre adresse de l'université",
        password_label: "Mot de passe",
        public_computer_label: "Ordinateur public ou partagé (session d'une heure au plus)",
        remember_me_label: "Rester connecté sur cet appareil (30 jours)",
        submit: "Se connecter",
        forgot_link: "Mot de passe oublié ?",
        activate_link: "Première connexion ? Activez votre compte",
        rejected: "Identifiant ou mot de passe incorrect.",
        incomplete: "Saisissez votre identifiant et votre mot de passe.",
        too_long: "Ce mot de passe est trop long (1024 octets au plus).",
        locked_temporary: "Compte temporairement verrouillé après plusieurs essais \
                           infructueux : réessayez dans {minutes} min.",
        locked_hard: "Compte verrouillé après trop d'essais infructueux. Pour le \
                      déverrouiller, choisissez un nouveau mot de passe avec « Mot de passe \
                      oublié », ou contactez l'assistance informatique.",
        disabled: "Ce compte est désactivé. Contactez l'assistance informatique de votre \
                   établissement.",
        signed_in_title: "Vous êtes connecté",
        signed_in_as: "Connecté en tant que",
        logout_button: "Se déconnecter",
        logout_title: "Déconnexion",
        logout_lead: "Voulez-vous vous déconnecter de Sésame ?",
        logged_out: "Vous êtes déconnecté de Sésame. Sur un ordinateur partagé, fermez aussi \
                     le navigateur.",
        not_signed_in: "Vous n'êtes pas connecté.",
        login_link: "Se connecter",
    },
    cas: CasTexts {
        title: "Retour à l'application",
        lead: "Votre navigateur n'exécute pas JavaScript : cliquez pour continuer.",
        button: "Continuer",
    },
    oidc: OidcTexts {
        consent_title: "Autoriser l'application",
        consent_lead: "Cette application demande à vous connecter avec votre compte :",
        consent_scopes: "Elle pourra connaître :",
        scope_openid: "un identifiant de votre compte, qui ne change jamais",
        scope_profile: "vos nom, prénom et identifiant de connexion",
        scope_email: "votre adresse électronique de l'université",
        scope_phone: "votre numéro de téléphone de récupération",
        scope_supann: "votre statut (étudiant, personnel), votre numéro d'étudiant ou d'agent et \
                       votre composante",
        consent_remembered: "Votre choix sera retenu pour cette application.",
        allow: "Autoriser",
        deny: "Refuser",
    },
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
    unknown_service_title: "Unknown application",
    unknown_service_body: "The application that sent you here is not allowed to use Sésame. You \
                           were not signed in to it; please tell the IT helpdesk.",
    mfa_required_title: "Two-step verification required",
    mfa_required_body: "This application requires two-step verification, which is not available \
                        for your account yet. Please contact the IT helpdesk.",
    throttled_title: "Too many attempts",
    throttled_body: "Too many requests came from your connection in a short time. Wait a \
                     minute, then try again.",
    forbidden_title: "Form expired",
    forbidden_body: "This form is no longer valid (it is too old, or cookies are blocked). Go \
                     back, reload the page and try again.",
    activation: ActivationTexts {
        title: "Activate my account",
        steps: "Step",
        start_lead: "To activate your student account, give your dossier number (it is on your \
                     enrolment certificate) and your date of birth.",
        dossier_label: "Dossier number",
        dossier_hint: "8 digits",
        birth_date_label: "Date of birth",
        staff_legend: "Staff: you received an activation code from the helpdesk",
        code_label_staff: "Activation code",
        continue_button: "Continue",
        refused: "These details cannot activate an account. Check them; if your account is \
                  already active, sign in or use \"forgot password\".",
        locked: "Too many failed attempts for this dossier number. Contact the helpdesk to \
                 unlock it.",
        expired: "Your activation has expired or was not found. Please start again.",
        contact_lead: "Give a personal e-mail address (not the university's) and a mobile \
                       number: they will let you recover your account. A confirmation code will \
                       be sent to the address.",
        email_label: "Personal e-mail address",
        email_hint: "For example firstname.lastname@example.org",
        phone_label: "Mobile number",
        phone_hint: "For example +33 6 12 34 56 78",
        invalid_email: "This e-mail address is not valid.",
        institutional_email: "Give a personal address, not a university address.",
        invalid_phone: "This mobile number is not valid.",
        code_lead: "A 6-digit code has just been sent to your address. It is valid for 10 \
                    minutes.",
        code_label: "Code received",
        wrong_code: "That code is not right. Attempts left:",
        void_code: "This code has expired or was mistyped too often. Give your address again to \
                    receive a new one.",
        change_address: "Change the address or get a new code",
        password_lead: "Choose your password: at least 12 characters. A phrase of several words \
                        is easy to remember and hard to guess.",
        new_password_label: "New password",
        confirm_label: "Confirm the password",
        password_hint: "At least 12 characters, without your name or date of birth.",
        too_short: "This password is too short: it needs at least 12 characters.",
        too_long: "This password is too long.",
        common: "This password appears in lists of leaked passwords. Choose another one.",
        personal: "This password contains personal information (name, date of birth, dossier \
                   number…).",
        guessable: "This password is too easy to guess. Add more words.",
        mismatch: "The two passwords differ.",
        busy: "The service is very busy. Please try again in a few seconds.",
        done_title: "Your account is active",
        done_lead: "Your identifier is:",
        continue_link: "Sign in",
        done_next: "Use it with your password to sign in to the university's applications.",
        already_done: "This activation is already finished or has expired.",
    },
    recovery: RecoveryTexts {
        forgot_title: "Forgotten password",
        forgot_lead: "Give your identifier (firstname.lastname) or your university address. We \
                      will send a link to choose a new password to your recovery addresses.",
        identifier_label: "Identifier or address",
        identifier_hint: "For example emilie.dupre or emilie.dupre@etu.uca.fr",
        send_button: "Send the link",
        sent: "If an account matches, a link has just been sent to its recovery addresses. It is \
               valid for 30 minutes. Check your spam folder too.",
        reset_title: "Choose a new password",
        reset_lead: "Choose your new password: at least 12 characters.",
        save_button: "Save",
        invalid: "This link is no longer valid (already used, expired or replaced by a newer \
                  one). You can ask for another.",
        done: "Your password has been changed. Your recovery addresses have been told.",
        forgot_link: "Ask for a new link",
    },
    login: LoginTexts {
        title: "Sign in",
        lead: "Sign in with your university identifier.",
        username_label: "Identifier",
        username_hint: "firstname.lastname, or your university address",
        password_label: "Password",
        public_computer_label: "Public or shared computer (a session of one hour at most)",
        remember_me_label: "Stay signed in on this device (30 days)",
        submit: "Sign in",
        forgot_link: "Forgot your password?",
        activate_link: "First time? Activate your account",
        rejected: "Wrong identifier or password.",
        incomplete: "Enter your identifier and your password.",
        too_long: "This password is too long (1024 bytes at most).",
        locked_temporary: "Account temporarily locked after several failed attempts: try \
                           again in {minutes} min.",
        locked_hard: "Account locked after too many failed attempts. To unlock it, choose a \
                      new password with \"Forgot your password?\", or contact the IT helpdesk.",
        disabled: "This account is disabled. Contact your institution's IT helpdesk.",
        signed_in_title: "You are signed in",
        signed_in_as: "Signed in as",
        logout_button: "Sign out",
        logout_title: "Sign out",
        logout_lead: "Do you want to sign out of Sésame?",
        logged_out: "You are signed out of Sésame. On a shared computer, close the browser too.",
        not_signed_in: "You are not signed in.",
        login_link: "Sign in",
    },
    cas: CasTexts {
        title: "Back to the application",
        lead: "Your browser does not run JavaScript: click to continue.",
        button: "Continue",
    },
    oidc: OidcTexts {
        consent_title: "Allow the application",
        consent_lead: "This application asks to sign you in with your account:",
        consent_scopes: "It will be able to see:",
        scope_openid: "an identifier of your account that never changes",
        scope_profile: "your names and your login",
        scope_email: "your university e-mail address",
        scope_phone: "your recovery phone number",
        scope_supann: "your status (student, staff), your student or employee number and your \
                       department",
        consent_remembered: "Your choice will be remembered for this application.",
        allow: "Allow",
        deny: "Deny",
    },
};
