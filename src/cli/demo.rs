//! Sample data for `sesame demo`: a registrar and an HR export made with
//! `shared/tools/gen_people.py` (in `demo/`), imported on the first start, and two active accounts
//! with documented passwords so a newcomer can sign in at once. Other demo students can be
//! activated at `/activate`; the confirmation mail lands in the outbox directory.

use crate::accounts::AccountState;
use crate::accounts::activation::NewContact;
use crate::accounts::provisioning::{Importer, parse_staff, parse_students};
use crate::app::App;
use crate::config::Config;
use crate::relying_parties::clients::{AuthMethod, OidcClient};
use crate::relying_parties::{CasService, MatchMode};

const STUDENTS: &str = include_str!("../../demo/students.csv");
const STAFF: &str = include_str!("../../demo/staff.csv");

/// The documented demo accounts: (login, password, who).
pub const DEMO_ACCOUNTS: [(&str, &str, &str); 2] = [
    (
        "ana.menard",
        "cheval agrafe pile correcte",
        "student (dossier 22000011)",
    ),
    (
        "jose.oconnor",
        "tuba orange sous la pluie",
        "staff (P100001)",
    ),
];

/// A student of the sample data who is still to be activated, for trying `/activate`.
pub const DEMO_PENDING_STUDENT: (&str, &str) = ("22000000", "2003-09-28");

/// The demo's own CAS service (`/demo/cas`, served by the demo itself), so a newcomer can click
/// through a real CAS login and see what an application receives.
pub const DEMO_SERVICE_ID: &str = "demo";
/// The demo's CAS service that requires a second factor (`/demo/cas-mfa`).
pub const DEMO_MFA_SERVICE_ID: &str = "demo-mfa";

/// The demo's configuration: the given one, plus `http` services allowed on the loopback issuer
/// and the demo CAS service and OIDC client.
pub fn configure(mut config: Config) -> Config {
    let public = config.public_url().clone();
    if public.scheme() == "http" {
        config.cas.allow_http_services = true;
    }
    if !config.cas.services.iter().any(|s| s.id == DEMO_SERVICE_ID) {
        let pattern = public
            .join("demo/cas")
            .expect("a relative path joins any base URL");
        let mut service = CasService::new(
            DEMO_SERVICE_ID,
            "Démonstration CAS",
            pattern.as_str(),
            MatchMode::Prefix,
        );
        service.order = 1000;
        service.attributes = [
            "mail",
            "displayName",
            "givenName",
            "sn",
            "eduPersonPrincipalName",
            "eduPersonAffiliation",
            "eduPersonPrimaryAffiliation",
            "supannEtuId",
            "supannEmpId",
            "supannEntiteAffectation",
        ]
        .map(String::from)
        .to_vec();
        // The same application, marked "MFA required" (`/demo/cas-mfa`): a session is stepped
        // up (or sent to enrol) before it gets a ticket. Evaluated first: the plain service's
        // prefix also matches its URL.
        let mut mfa = service.clone();
        mfa.id = DEMO_MFA_SERVICE_ID.into();
        mfa.name = "Démonstration CAS (double authentification exigée)".into();
        mfa.pattern = public
            .join("demo/cas-mfa")
            .expect("a relative path joins any base URL")
            .to_string();
        mfa.order = 999;
        mfa.mfa_required = true;
        config.cas.services.push(service);
        config.cas.services.push(mfa);
    }
    if public.scheme() == "http" {
        config.oidc.allow_http_redirects = true;
    }
    let client_id = crate::web::handlers::demo::DEMO_CLIENT_ID;
    if !config.oidc.clients.iter().any(|c| c.id == client_id) {
        let mut client = OidcClient::new(client_id, "Démonstration OpenID Connect");
        client.public = true;
        client.auth_method = AuthMethod::None;
        client.first_party = true;
        client.redirect_uris = vec![format!("{public}demo/oidc")];
        client.post_logout_redirect_uris = vec![public.to_string()];
        config.oidc.clients.push(client);
    }
    config
}

/// Imports the sample feeds and activates the demo accounts, once.
pub async fn seed(app: &App) -> anyhow::Result<()> {
    if app.store.count_accounts().await? > 0 {
        return Ok(());
    }
    let today = app.clock.now().date();
    let importer = Importer::new(app.store.clone(), app.clock.clone(), app.entropy.clone());
    let (rows, rejected) = parse_students(STUDENTS.as_bytes(), today)?;
    importer.import_students(&rows, rejected, false).await?;
    let (rows, rejected) = parse_staff(STAFF.as_bytes(), today)?;
    importer.import_staff(&rows, rejected, false).await?;
    for (login, password, _) in DEMO_ACCOUNTS {
        let account = app
            .store
            .find_account_by_login(login)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the demo data has no account {login}"))?;
        if account.state != AccountState::Pending {
            continue;
        }
        let hash = app.passwords.hash(password).await?;
        let contact = NewContact {
            kind: "email",
            value: format!("{login}@example.org"),
            confirmed: true,
        };
        app.store
            .complete_activation(&account.id, &hash, &[contact], app.clock.unix_now())
            .await?;
    }
    Ok(())
}

/// What the demo prints under its banner.
pub fn welcome(app: &App) -> String {
    let mut text = format!(
        "Demo accounts (sign in at {}login):\n",
        app.config.public_url()
    );
    for (login, password, who) in DEMO_ACCOUNTS {
        text.push_str(&format!("  {login:<14} password: {password:<28} {who}\n"));
    }
    text.push_str(&format!(
        "Try an activation at /activate with dossier {} and birth date {}.\n",
        DEMO_PENDING_STUDENT.0, DEMO_PENDING_STUDENT.1
    ));
    text.push_str(&format!(
        "Try a CAS login through the demo application: {}demo/cas\n",
        app.config.public_url()
    ));
    text.push_str(&format!(
        "Two-step verification: enrol at {0}account, then try {0}demo/cas-mfa\n",
        app.config.public_url()
    ));
    text.push_str(&format!(
        "Mails are written to {}\n",
        app.config.outbox_dir().display()
    ));
    text
}
