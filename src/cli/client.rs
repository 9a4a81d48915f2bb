//! `sesame client add|list|show|remove|rotate-secret`: the OpenID Connect clients registered in
//! the database (those of the configuration file are listed too, and changed only there). Every
//! change is audited; a generated secret is printed once and only its SHA-256 is kept.

use super::ClientCommand;
use crate::app::Admin;
use crate::config::Config;
use crate::relying_parties::clients::{AuthMethod, GrantType, OidcClient};

/// What is shown of a client: never the secret's digest.
fn public_view(client: &OidcClient, origin: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(client).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("secret_sha256");
        object.insert("origin".into(), origin.into());
    }
    value
}

fn print_client(client: &OidcClient, origin: &str) {
    println!("{} — {} ({origin})", client.id, client.name);
    println!(
        "  {} client, {}; grants: {}",
        if client.public {
            "public"
        } else {
            "confidential"
        },
        client.auth_method.as_str(),
        client
            .grants
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for uri in &client.redirect_uris {
        println!("  redirect URI: {uri}");
    }
    for uri in &client.post_logout_redirect_uris {
        println!("  post-logout redirect URI: {uri}");
    }
    if let Some(uri) = &client.backchannel_logout_uri {
        println!("  back-channel logout: {uri}");
    }
    println!(
        "  scopes: {}; ID tokens {}; access tokens {:?}; first-party: {}; MFA required: {}",
        client.scopes.join(" "),
        client.signing_alg,
        client.access_token_format,
        client.first_party,
        client.mfa_required
    );
}

pub async fn run(config: Config, command: ClientCommand) -> anyhow::Result<()> {
    let admin = Admin::open(config).await?;
    let clients = admin.clients();
    let refused = |e: String| anyhow::anyhow!("client refused: {e}");
    match command {
        ClientCommand::Add {
            id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            public,
            auth_method,
            grants,
            scopes,
            first_party,
            signing_alg,
            access_token_format,
            mfa_required,
            json,
        } => {
            let mut client = OidcClient::new(&id, &name);
            client.redirect_uris = redirect_uris;
            client.post_logout_redirect_uris = post_logout_redirect_uris;
            client.backchannel_logout_uri = backchannel_logout_uri;
            client.public = public;
            client.auth_method = match auth_method {
                Some(method) => method.parse().map_err(refused)?,
                None if public => AuthMethod::None,
                None => AuthMethod::ClientSecretBasic,
            };
            if !grants.is_empty() {
                client.grants = grants
                    .iter()
                    .map(|g| g.parse::<GrantType>())
                    .collect::<Result<_, _>>()
                    .map_err(refused)?;
            }
            if !scopes.is_empty() {
                client.scopes = scopes;
                if !client.scopes.iter().any(|s| s == "openid") {
                    client.scopes.insert(0, "openid".into());
                }
            }
            client.first_party = first_party;
            client.signing_alg = signing_alg;
            client.access_token_format = access_token_format.parse().map_err(refused)?;
            client.mfa_required = mfa_required;
            let secret = clients
                .add_client(super::operator(), client.clone())
                .await
                .map_err(refused)?;
            if json.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "client": public_view(&client, "database"),
                        "client_secret": secret,
                    }))?
                );
            } else {
                println!("Client {id} registered.");
                if let Some(secret) = secret {
                    println!("client secret: {secret}");
                    println!("(shown once: only its SHA-256 is kept)");
                }
            }
        }
        ClientCommand::List(flag) => {
            let all = clients.list().await?;
            if flag.json {
                let list: Vec<_> = all.iter().map(|(c, o)| public_view(c, o)).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if all.is_empty() {
                println!("No OIDC client is registered.");
            } else {
                for (client, origin) in &all {
                    println!(
                        "{:<24} {:<8} {:<12} {}",
                        client.id,
                        origin,
                        if client.public {
                            "public"
                        } else {
                            "confidential"
                        },
                        client.redirect_uris.join(" ")
                    );
                }
            }
        }
        ClientCommand::Show { id, json } => {
            let all = clients.list().await?;
            let (client, origin) = all
                .iter()
                .find(|(c, _)| c.id == id)
                .ok_or_else(|| anyhow::anyhow!("no OIDC client has the id `{id}`"))?;
            if json.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&public_view(client, origin))?
                );
            } else {
                print_client(client, origin);
            }
        }
        ClientCommand::Remove { id, json } => {
            if admin.config.oidc.clients.iter().any(|c| c.id == id) {
                anyhow::bail!(
                    "client `{id}` is declared in the configuration file: remove it there"
                );
            }
            let removed = clients
                .remove_client(super::operator(), &id)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if !removed {
                anyhow::bail!("no OIDC client has the id `{id}` in the database");
            }
            if json.json {
                println!("{}", serde_json::json!({"removed": id}));
            } else {
                println!("Client {id} removed (its tokens and consents too).");
            }
        }
        ClientCommand::RotateSecret { id, json } => {
            let secret = clients
                .rotate_secret(super::operator(), &id)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if json.json {
                println!(
                    "{}",
                    serde_json::json!({"client_id": id, "client_secret": secret})
                );
            } else {
                println!("client secret: {secret}");
                println!("(shown once: the previous secret no longer works)");
            }
        }
    }
    Ok(())
}
