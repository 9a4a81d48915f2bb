//! The mails Sésame sends, rendered from `templates/mail/<kind>.<fr|en>.<txt|html>`: a plain-text
//! part and an HTML part (autoescaped; values from users or configuration never become markup).
//! French unless the person chose English.

use askama::Template;

use super::{EmailAddress, MailKind, OutgoingMail};
use crate::locale::Locale;

/// The 6-digit code that proves control of a contact address (activation, contact change).
pub fn confirmation_code(
    locale: Locale,
    to: EmailAddress,
    code: &str,
    university_name: &str,
) -> OutgoingMail {
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Votre code de confirmation Sésame";
            (
                subject,
                render(&ConfirmationCodeFrText {
                    university: university_name,
                    code,
                }),
                render(&ConfirmationCodeFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                    code,
                }),
            )
        }
        Locale::En => {
            let subject = "Your Sésame confirmation code";
            (
                subject,
                render(&ConfirmationCodeEnText {
                    university: university_name,
                    code,
                }),
                render(&ConfirmationCodeEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                    code,
                }),
            )
        }
    };
    mail(MailKind::ConfirmationCode, to, subject, text, html)
}

/// The link that lets a person who forgot the password choose a new one. `link` is built from
/// the configured public URL, never from request headers (DESIGN.md §4).
pub fn password_reset(
    locale: Locale,
    to: EmailAddress,
    link: &url::Url,
    university_name: &str,
    valid_minutes: u32,
) -> OutgoingMail {
    let link = link.as_str();
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Réinitialisation de votre mot de passe Sésame";
            (
                subject,
                render(&PasswordResetFrText {
                    university: university_name,
                    link,
                    valid_minutes,
                }),
                render(&PasswordResetFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                    link,
                    valid_minutes,
                }),
            )
        }
        Locale::En => {
            let subject = "Reset your Sésame password";
            (
                subject,
                render(&PasswordResetEnText {
                    university: university_name,
                    link,
                    valid_minutes,
                }),
                render(&PasswordResetEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                    link,
                    valid_minutes,
                }),
            )
        }
    };
    mail(MailKind::PasswordReset, to, subject, text, html)
}

/// The link that, with a code sent by SMS, removes the second factors of a person who lost them
/// all (DESIGN.md §5: two channels).
pub fn factor_recovery(
    locale: Locale,
    to: EmailAddress,
    link: &url::Url,
    university_name: &str,
    valid_minutes: u32,
) -> OutgoingMail {
    let link = link.as_str();
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Double authentification perdue : votre lien Sésame";
            (
                subject,
                render(&FactorRecoveryFrText {
                    university: university_name,
                    link,
                    valid_minutes,
                }),
                render(&FactorRecoveryFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                    link,
                    valid_minutes,
                }),
            )
        }
        Locale::En => {
            let subject = "Lost two-step verification: your Sésame link";
            (
                subject,
                render(&FactorRecoveryEnText {
                    university: university_name,
                    link,
                    valid_minutes,
                }),
                render(&FactorRecoveryEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                    link,
                    valid_minutes,
                }),
            )
        }
    };
    mail(MailKind::FactorRecovery, to, subject, text, html)
}

/// The notice sent to every contact after the password was changed or reset.
pub fn password_changed(locale: Locale, to: EmailAddress, university_name: &str) -> OutgoingMail {
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Votre mot de passe Sésame a été changé";
            (
                subject,
                render(&PasswordChangedFrText {
                    university: university_name,
                }),
                render(&PasswordChangedFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                }),
            )
        }
        Locale::En => {
            let subject = "Your Sésame password was changed";
            (
                subject,
                render(&PasswordChangedEnText {
                    university: university_name,
                }),
                render(&PasswordChangedEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                }),
            )
        }
    };
    mail(MailKind::PasswordChanged, to, subject, text, html)
}

/// Notice to the recovery contacts that the account hard-locked after too many wrong passwords
/// (DESIGN.md §6): only a password reset (the link in the mail) or the helpdesk lifts it.
pub fn account_locked(
    locale: Locale,
    to: EmailAddress,
    university_name: &str,
    forgot_link: &url::Url,
) -> OutgoingMail {
    let link = forgot_link.as_str();
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Votre compte Sésame est verrouillé";
            (
                subject,
                render(&AccountLockedFrText {
                    university: university_name,
                    link,
                }),
                render(&AccountLockedFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                    link,
                }),
            )
        }
        Locale::En => {
            let subject = "Your Sésame account is locked";
            (
                subject,
                render(&AccountLockedEnText {
                    university: university_name,
                    link,
                }),
                render(&AccountLockedEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                    link,
                }),
            )
        }
    };
    mail(MailKind::AccountLocked, to, subject, text, html)
}

/// Notice to every contact of a change to the account's security (DESIGN.md §5: adding or
/// removing a factor notifies the contacts). `what` is one sentence, in the mail's language.
pub fn security_notice(
    locale: Locale,
    to: EmailAddress,
    university_name: &str,
    what: &str,
) -> OutgoingMail {
    let (subject, text, html) = match locale {
        Locale::Fr => {
            let subject = "Changement de sécurité sur votre compte Sésame";
            (
                subject,
                render(&SecurityNoticeFrText {
                    university: university_name,
                    what,
                }),
                render(&SecurityNoticeFrHtml {
                    lang: "fr",
                    subject,
                    university: university_name,
                    what,
                }),
            )
        }
        Locale::En => {
            let subject = "A security change on your Sésame account";
            (
                subject,
                render(&SecurityNoticeEnText {
                    university: university_name,
                    what,
                }),
                render(&SecurityNoticeEnHtml {
                    lang: "en",
                    subject,
                    university: university_name,
                    what,
                }),
            )
        }
    };
    mail(MailKind::SecurityNotice, to, subject, text, html)
}

fn mail(
    kind: MailKind,
    to: EmailAddress,
    subject: &str,
    text: String,
    html: String,
) -> OutgoingMail {
    OutgoingMail {
        kind,
        to,
        subject: subject.to_string(),
        text,
        html,
    }
}

/// Renders a mail template. The values are plain strings and numbers whose `Display` cannot
/// fail, and the templates call no fallible filter, so an error here is a bug in this file.
fn render(template: &impl Template) -> String {
    template
        .render()
        .expect("mail templates only display strings and numbers")
}

#[derive(Template)]
#[template(path = "mail/confirmation_code.fr.txt", escape = "none")]
struct ConfirmationCodeFrText<'a> {
    university: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "mail/confirmation_code.en.txt", escape = "none")]
struct ConfirmationCodeEnText<'a> {
    university: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "mail/confirmation_code.fr.html")]
struct ConfirmationCodeFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "mail/confirmation_code.en.html")]
struct ConfirmationCodeEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_reset.fr.txt", escape = "none")]
struct PasswordResetFrText<'a> {
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/password_reset.en.txt", escape = "none")]
struct PasswordResetEnText<'a> {
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/password_reset.fr.html")]
struct PasswordResetFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/password_reset.en.html")]
struct PasswordResetEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/password_changed.fr.txt", escape = "none")]
struct PasswordChangedFrText<'a> {
    university: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.en.txt", escape = "none")]
struct PasswordChangedEnText<'a> {
    university: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.fr.html")]
struct PasswordChangedFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.en.html")]
struct PasswordChangedEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.fr.txt", escape = "none")]
struct AccountLockedFrText<'a> {
    university: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.en.txt", escape = "none")]
struct AccountLockedEnText<'a> {
    university: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.fr.html")]
struct AccountLockedFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.en.html")]
struct AccountLockedEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "Université <script>alert(1)</script> & \"Co\"";

    fn to() -> EmailAddress {
        EmailAddress::parse("emilie.dupre@example.org").unwrap()
    }

    fn assert_no_markup_from_inputs(mail: &OutgoingMail) {
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(mail.html.contains("&#60;script&#62;"), "{}", mail.html);
        // The text part is not HTML: it shows the name as written.
        assert!(mail.text.contains(HOSTILE), "{}", mail.text);
        assert!(!mail.text.contains("&#60;"), "{}", mail.text);
        assert!(mail.html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn confirmation_codes_render_in_both_languages() {
        let fr = confirmation_code(Locale::Fr, to(), "482913", HOSTILE);
        assert_eq!(fr.kind, MailKind::ConfirmationCode);
        assert_eq!(fr.to, to());
        assert_eq!(fr.subject, "Votre code de confirmation Sésame");
        assert!(fr.text.contains("    482913\n"), "{}", fr.text);
        assert!(fr.html.contains(">482913</p>"), "{}", fr.html);
        assert!(fr.text.contains("Si vous n'êtes pas à l'origine"));
        assert!(fr.html.contains("<html lang=\"fr\">"));
        assert_no_markup_from_inputs(&fr);

        let en = confirmation_code(Locale::En, to(), "482913", HOSTILE);
        assert_eq!(en.subject, "Your Sésame confirmation code");
        assert!(en.text.contains("482913"));
        assert!(en.html.contains("482913"));
        assert!(en.text.contains("If you did not ask for this code"));
        assert!(en.html.contains("<html lang=\"en\">"));
        assert_no_markup_from_inputs(&en);

        let hostile_code = confirmation_code(Locale::Fr, to(), "<b>1</b>", "UCA");
        assert!(hostile_code.html.contains("&#60;b&#62;1&#60;/b&#62;"));
    }

    #[test]
    fn reset_links_render_whole_and_escaped_in_both_languages() {
        let link =
            url::Url::parse("https://sso.uca.fr/password/reset?token=abc_DEF-123&x=1").unwrap();
        for locale in [Locale::Fr, Locale::En] {
            let mail = password_reset(locale, to(), &link, HOSTILE, 30);
            assert_eq!(mail.kind, MailKind::PasswordReset);
            // The text part carries the link verbatim on its own line; HTML escapes the `&`.
            assert!(mail.text.contains(&format!("\n{link}\n")), "{}", mail.text);
            assert!(
                mail.html.contains(
                    "href=\"https://sso.uca.fr/password/reset?token=abc_DEF-123&#38;x=1\""
                ),
                "{}",
                mail.html
            );
            assert!(mail.text.contains("30 minutes"));
            assert_no_markup_from_inputs(&mail);
        }
        let fr = password_reset(Locale::Fr, to(), &link, "UCA", 30);
        assert!(fr.text.contains("Si vous n'avez rien demandé"));
        let en = password_reset(Locale::En, to(), &link, "UCA", 30);
        assert!(en.text.contains("If you did not ask for this"));
    }

    #[test]
    fn password_change_notices_say_what_to_do_if_it_was_not_you() {
        let fr = password_changed(Locale::Fr, to(), HOSTILE);
        assert_eq!(fr.kind, MailKind::PasswordChanged);
        assert!(fr.text.contains("Si ce n'est pas vous"));
        assert!(fr.html.contains("Si ce n'est pas vous"));
        assert_no_markup_from_inputs(&fr);
        let en = password_changed(Locale::En, to(), HOSTILE);
        assert!(en.text.contains("If it was not you"));
        assert_no_markup_from_inputs(&en);
        assert_ne!(fr.subject, en.subject);
    }

    #[test]
    fn mails_never_debug_print_their_bodies() {
        let mail = confirmation_code(Locale::Fr, to(), "482913", "UCA");
        let printed = format!("{mail:?}");
        assert!(!printed.contains("482913"), "{printed}");
    }
}

#[derive(Template)]
#[template(path = "mail/security_notice.fr.txt", escape = "none")]
struct SecurityNoticeFrText<'a> {
    university: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/security_notice.en.txt", escape = "none")]
struct SecurityNoticeEnText<'a> {
    university: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/security_notice.fr.html")]
struct SecurityNoticeFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/security_notice.en.html")]
struct SecurityNoticeEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/factor_recovery.fr.txt", escape = "none")]
struct FactorRecoveryFrText<'a> {
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/factor_recovery.fr.html")]
struct FactorRecoveryFrHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/factor_recovery.en.txt", escape = "none")]
struct FactorRecoveryEnText<'a> {
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/factor_recovery.en.html")]
struct FactorRecoveryEnHtml<'a> {
    lang: &'a str,
    subject: &'a str,
    university: &'a str,
    link: &'a str,
    valid_minutes: u32,
}
