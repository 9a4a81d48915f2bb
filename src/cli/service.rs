//! `sesame service add|list|show|remove`: the CAS services registered in the database (those of
//! the configuration file are listed too, and changed only there). Every change is audited.

use super::ServiceCommand;
use crate::app::Admin;
use crate::audit::AuditAction;
use crate::config::Config;
use crate::relying_parties::{CasService, MatchMode};

fn print_service(service: &CasService, origin: &str) {
    println!("{} — {} ({origin})", service.id, service.name);
    println!("  {} {}", service.mode, service.pattern);
    println!(
        "  order {}, cas:user = {}",
        service.order, service.user_attribute
    );
    println!(
        "  attributes: {}{}",
        if service.attributes.is_empty() {
            "none".to_string()
        } else {
            service.attributes.join(", ")
        },
        if service.attributes_on_cas2 {
            " (also on CAS 2)"
        } else {
            " (CAS 3 only)"
        }
    );
    println!(
        "  proxy: {}, MFA required: {}, single logout: {}{}",
        service.proxy,
        service.mfa_required,
        service.single_logout,
        service
            .logout_url
            .as_deref()
            .map(|u| format!(" to {u}"))
            .unwrap_or_default()
    );
}

pub async fn run(config: Config, command: ServiceCommand) -> anyhow::Result<()> {
    let admin = Admin::open(config).await?;
    let cas = admin.cas();
    let from_config = |id: &str| admin.config.cas.services.iter().any(|s| s.id == id);
    match command {
        ServiceCommand::Add {
            id,
            name,
            url,
            mode,
            order,
            attributes,
            user_attribute,
            no_cas2_attributes,
            proxy,
            mfa_required,
            single_logout,
            logout_url,
            json,
        } => {
            let mode: MatchMode = mode.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let service = CasService {
                id,
                name,
                pattern: url,
                mode,
                order,
                attributes: attributes
                    .into_iter()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
                user_attribute,
                attributes_on_cas2: !no_cas2_attributes,
                proxy,
                mfa_required,
                single_logout,
                logout_url,
            };
            cas.add_service(&service)
                .await
                .map_err(|e| anyhow::anyhow!("service refused: {e}"))?;
            admin
                .audit
                .record_from(
                    super::operator(),
                    AuditAction::CasServiceAdded,
                    Some(service.id.clone()),
                    Some("cli".into()),
                    serde_json::to_value(&service)?,
                )
                .await?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&service)?);
            } else {
                println!("Service {} registered.", service.id);
            }
        }
        ServiceCommand::List(flag) => {
            let registry = cas.registry().await?;
            if flag.json {
                println!("{}", serde_json::to_string_pretty(registry.services())?);
            } else if registry.services().is_empty() {
                println!("No CAS service is registered.");
            } else {
                for service in registry.services() {
                    let origin = if from_config(&service.id) {
                        "config"
                    } else {
                        "database"
                    };
                    println!(
                        "{:<20} {:<6} {:>4}  {:<7} {}",
                        service.id, origin, service.order, service.mode, service.pattern
                    );
                }
            }
        }
        ServiceCommand::Show { id, json } => {
            let registry = cas.registry().await?;
            let service = registry
                .by_id(&id)
                .ok_or_else(|| anyhow::anyhow!("no CAS service has the id `{id}`"))?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(service)?);
            } else {
                print_service(
                    service,
                    if from_config(&id) {
                        "config"
                    } else {
                        "database"
                    },
                );
            }
        }
        ServiceCommand::Remove { id, json } => {
            let removed = cas
                .remove_service(&id)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if !removed {
                anyhow::bail!("no CAS service has the id `{id}`");
            }
            admin
                .audit
                .record_from(
                    super::operator(),
                    AuditAction::CasServiceRemoved,
                    Some(id.clone()),
                    Some("cli".into()),
                    serde_json::json!({}),
                )
                .await?;
            if json.json {
                println!("{}", serde_json::json!({"id": id, "removed": true}));
            } else {
                println!("Service {id} removed.");
            }
        }
    }
    Ok(())
}
