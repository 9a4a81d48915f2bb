//! `sesame admin …`: the helpdesk's account commands (every one audited).

use crate::app::Admin;
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
