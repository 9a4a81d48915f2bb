//! `sesame admin …`: the helpdesk's account commands (every one audited).

use crate::app::Admin;
use crate::audit::AuditAction;
use crate::config::Config;

/// `sesame admin activation-code LOGIN`: prints a single-use staff activation code (valid 7
/// days); a new one voids the previous.
pub async fn activation_code(config: Config, login: &str, json: bool) -> anyhow::Result<()> {
    let admin = Admin::open(config).await?;
    let activation = admin.activation()?;
    let login = login.trim().to_lowercase();
    match activation
        .issue_staff_code(&login, super::operator())
        .await?
    {
        Some((account, code)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"login": account.login, "code": code.expose(), "valid_days": 7})
                );
            } else {
                println!(
                    "Activation code for {} (valid 7 days, single use):",
                    account.login
                );
                println!("{}", code.expose());
                println!("The staff member enters it at /activate; a new code voids this one.");
            }
            Ok(())
        }
        None => anyhow::bail!(
            "{login} is not a staff account waiting for activation (unknown, student-only, already active or disabled)"
        ),
    }
}

/// `sesame admin unlock-activation DOSSIER --reason …`.
pub async fn unlock_activation(
    config: Config,
    dossier: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        anyhow::bail!("give the reason for the audit trail with --reason");
    }
    let admin = Admin::open(config).await?;
    let unlocked = admin
        .activation()?
        .unlock_dossier(dossier, super::operator(), reason)
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"dossier_number": dossier.trim(), "unlocked": unlocked})
        );
    } else if unlocked {
        println!("Activation of dossier {} unlocked.", dossier.trim());
    } else {
        println!(
            "Dossier {} had no failures or lock; nothing to do.",
            dossier.trim()
        );
    }
    Ok(())
}

/// Parses `--since`: RFC 3339, a date (midnight UTC), or a duration ago (`24h`, `7days`).
fn parse_since(text: &str, now: i64) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &date_format) {
        return Ok(date.midnight().assume_utc().unix_timestamp());
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now - ago.as_secs() as i64);
    }
    anyhow::bail!(
        "--since `{text}` is neither a time (2026-09-01T08:00:00Z), a date (2026-09-01) nor a duration (24h, 7days)"
    )
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `sesame admin show LOGIN`.
pub async fn show(config: Config, login: &str, json: bool) -> anyhow::Result<()> {
    let report = Admin::open(config).await?.helpdesk().show(login).await?;
    if json {
        return print_json(&report);
    }
    println!("{} ({}), account {}", report.login, report.name, report.id);
    if !report.aliases.is_empty() {
        println!("  former logins: {}", report.aliases.join(", "));
    }
    match &report.disabled_reason {
        Some(reason) => println!("  state:         {} ({reason})", report.state),
        None => println!("  state:         {}", report.state),
    }
    if let Some(at) = &report.activated {
        println!("  activated:     {at}");
    }
    let lock = &report.lock;
    match lock.state {
        "open" => println!(
            "  lock:          none ({} consecutive wrong password(s))",
            lock.failures
        ),
        "temporary" => println!(
            "  lock:          TEMPORARY until {}: {}",
            lock.until.as_deref().unwrap_or("?"),
            lock.reason.as_deref().unwrap_or("")
        ),
        _ => println!(
            "  lock:          HARD: {}",
            lock.reason.as_deref().unwrap_or("")
        ),
    }
    if lock.refused_while_locked > 0 {
        println!(
            "                 {} attempt(s) refused while locked",
            lock.refused_while_locked
        );
    }
    if let Some(at) = &lock.last_failure {
        println!("  last failure:  {at}");
    }
    match (&report.last_login, &report.last_login_from) {
        (Some(at), Some(from)) => println!("  last login:    {at} from {from}"),
        (Some(at), None) => println!("  last login:    {at}"),
        _ => println!("  last login:    never"),
    }
    println!(
        "  factors:       {}",
        if report.factors.is_empty() {
            "none (not activated)".to_string()
        } else {
            report.factors.join(", ")
        }
    );
    for contact in &report.contacts {
        println!(
            "  contact:       {} {}{}",
            contact.kind,
            contact.value,
            if contact.confirmed {
                ""
            } else {
                " (unconfirmed)"
            }
        );
    }
    println!("  sessions:      {}", report.sessions.len());
    for s in &report.sessions {
        println!(
            "    {}  {}  since {}  last seen {}  from {}",
            s.id,
            s.kind,
            s.signed_in,
            s.last_seen,
            s.client_ip.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// `sesame admin unlock LOGIN --reason …`.
pub async fn unlock(config: Config, login: &str, reason: &str, json: bool) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let lifted = helpdesk.unlock(login, super::operator(), reason).await?;
    if json {
        print_json(&serde_json::json!({"login": login.trim(), "unlocked": lifted}))
    } else {
        if lifted {
            println!("{} unlocked.", login.trim());
        } else {
            println!("{} had no failures or lock; nothing to do.", login.trim());
        }
        Ok(())
    }
}

/// `sesame admin disable LOGIN --reason …`.
pub async fn disable(config: Config, login: &str, reason: &str, json: bool) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let ended = helpdesk.disable(login, super::operator(), reason).await?;
    if json {
        print_json(
            &serde_json::json!({"login": login.trim(), "state": "disabled", "sessions_ended": ended}),
        )
    } else {
        println!("{} disabled; {ended} session(s) ended.", login.trim());
        Ok(())
    }
}

/// `sesame admin enable LOGIN`.
pub async fn enable(config: Config, login: &str, reason: &str, json: bool) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let state = helpdesk.enable(login, super::operator(), reason).await?;
    if json {
        print_json(&serde_json::json!({"login": login.trim(), "state": state.as_str()}))
    } else {
        println!("{} enabled (state: {state}).", login.trim());
        Ok(())
    }
}

/// `sesame admin revoke-sessions LOGIN`.
pub async fn revoke_sessions(
    config: Config,
    login: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let ended = helpdesk
        .revoke_sessions(login, super::operator(), reason)
        .await?;
    if json {
        print_json(&serde_json::json!({"login": login.trim(), "sessions_ended": ended}))
    } else {
        println!("{ended} session(s) of {} ended.", login.trim());
        Ok(())
    }
}

/// `sesame admin reset-mfa LOGIN --reason …`.
pub async fn reset_mfa(
    config: Config,
    login: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let removed = helpdesk.reset_mfa(login, super::operator(), reason).await?;
    if json {
        print_json(&serde_json::json!({"login": login.trim(), "factors_removed": removed}))
    } else {
        println!(
            "{removed} second factor(s) of {} removed; the recovery contacts were told.",
            login.trim()
        );
        Ok(())
    }
}

/// `sesame admin consents LOGIN`.
pub async fn consents(config: Config, login: &str, json: bool) -> anyhow::Result<()> {
    let admin = Admin::open(config).await?;
    let account = admin.helpdesk().account(login).await?;
    let consents = admin.store.list_consents(&account.id).await?;
    if json {
        let list: Vec<_> = consents
            .iter()
            .map(|(client, scopes, at)| {
                serde_json::json!({"client": client, "scopes": scopes,
                    "granted_at": crate::clock::rfc3339(crate::clock::from_unix(*at))})
            })
            .collect();
        return print_json(&serde_json::json!({"login": account.login, "consents": list}));
    }
    if consents.is_empty() {
        println!("{} has allowed no OIDC client.", account.login);
    }
    for (client, scopes, at) in &consents {
        println!(
            "{client:<24} {}  since {}",
            scopes.join(" "),
            crate::clock::rfc3339(crate::clock::from_unix(*at))
        );
    }
    Ok(())
}

/// `sesame admin revoke-consent LOGIN [--client ID] --reason …`.
pub async fn revoke_consent(
    config: Config,
    login: &str,
    client: Option<&str>,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why (it is recorded in the audit trail)");
    }
    let admin = Admin::open(config).await?;
    let account = admin.helpdesk().account(login).await?;
    let revoked = admin.store.delete_consents(&account.id, client).await?;
    admin
        .audit
        .record_from(
            super::operator(),
            AuditAction::OidcConsentRevoked,
            Some(account.id.clone()),
            Some("cli".into()),
            serde_json::json!({"client": client, "count": revoked, "reason": reason.trim()}),
        )
        .await?;
    if json {
        print_json(&serde_json::json!({"login": account.login, "consents_revoked": revoked}))
    } else {
        println!("{revoked} consent(s) of {} revoked.", account.login);
        Ok(())
    }
}

/// `sesame admin sessions LOGIN`.
pub async fn sessions(config: Config, login: &str, json: bool) -> anyhow::Result<()> {
    let helpdesk = Admin::open(config).await?.helpdesk();
    let sessions = helpdesk.sessions(login).await?;
    let logouts = helpdesk.single_logouts(login).await?;
    if json {
        return print_json(&serde_json::json!({"sessions": sessions, "single_logouts": logouts}));
    }
    if sessions.is_empty() {
        println!("{} has no live session.", login.trim());
    }
    for s in &sessions {
        println!(
            "{}  {}  signed in {}  last seen {}  ends {}  from {}  factors {}  {}",
            s.id,
            s.kind,
            s.signed_in,
            s.last_seen,
            s.expires,
            s.client_ip.as_deref().unwrap_or("?"),
            s.factors.join("+"),
            s.user_agent.as_deref().unwrap_or("")
        );
    }
    if !logouts.is_empty() {
        println!("Single logout of ended sessions (most recent first):");
    }
    for l in &logouts {
        println!(
            "  {:<20} {:<9} attempts {}  queued {}{}{}",
            l.service_id,
            l.state,
            l.attempts,
            l.queued_at
                .map(|at| crate::clock::rfc3339(crate::clock::from_unix(at)))
                .unwrap_or_else(|| "just now".into()),
            l.finished_at
                .map(|at| format!(
                    "  finished {}",
                    crate::clock::rfc3339(crate::clock::from_unix(at))
                ))
                .unwrap_or_default(),
            l.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `sesame admin audit [--login L] [--since T] [--limit N]`.
pub async fn audit(
    config: Config,
    login: Option<&str>,
    since: Option<&str>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    if limit == 0 || limit > 10_000 {
        anyhow::bail!("--limit must be between 1 and 10000");
    }
    let admin = Admin::open(config).await?;
    let since = since
        .map(|text| parse_since(text, admin.clock.unix_now()))
        .transpose()?;
    let events = admin.helpdesk().audit(login, since, limit).await?;
    if json {
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "at": crate::clock::rfc3339(e.at()),
                    "actor": e.event.actor.to_string(),
                    "action": e.event.action.as_str(),
                    "subject": e.event.subject,
                    "source": e.event.source,
                    "user_agent": e.event.user_agent,
                    "request_id": e.event.request_id,
                    "details": e.event.details,
                })
            })
            .collect();
        return print_json(&rows);
    }
    for e in &events {
        println!(
            "{}  {:<36} {:<22} {:<24} from {:<15} {}",
            crate::clock::rfc3339(e.at()),
            e.event.action.as_str(),
            e.event.actor.to_string(),
            e.event.subject.as_deref().unwrap_or("-"),
            e.event.source.as_deref().unwrap_or("-"),
            e.event.details
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_durations_ago() {
        let now = 1_788_000_000;
        assert_eq!(
            parse_since("2026-09-01T08:00:00Z", now).unwrap(),
            1_788_249_600
        );
        assert_eq!(parse_since("2026-09-01", now).unwrap(), 1_788_220_800);
        assert_eq!(parse_since("24h", now).unwrap(), now - 86_400);
        assert!(parse_since("yesterday-ish", now).is_err());
    }
}
