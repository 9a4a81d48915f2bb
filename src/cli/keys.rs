//! `sesame keys list|rotate`.

use std::str::FromStr as _;

use crate::app::{App, open_store, rotation_policy};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::keys::{KeyInfo, SigningAlgorithm, list_stored};

fn print_table(keys: &[KeyInfo]) {
    println!(
        "{:<24} {:<6} {:<8} {:<21} {:<21}",
        "KID", "ALG", "STATE", "CREATED", "SIGNS FROM / RETIRED"
    );
    for key in keys {
        let when = key
            .signs_from
            .or(key.retired_at)
            .map(rfc3339)
            .unwrap_or_default();
        println!(
            "{:<24} {:<6} {:<8} {:<21} {:<21}",
            key.kid,
            key.algorithm,
            key.state,
            rfc3339(key.created_at),
            when
        );
    }
}

pub async fn list(config: Config, json: bool) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let keys = list_stored(store.as_ref(), rotation_policy(&config)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
    } else if keys.is_empty() {
        println!("No signing keys yet: they are generated when Sésame first starts.");
    } else {
        print_table(&keys);
    }
    Ok(())
}

pub async fn rotate(config: Config, algorithms: &[String], json: bool) -> anyhow::Result<()> {
    let chosen: Vec<SigningAlgorithm> = if algorithms.is_empty() {
        SigningAlgorithm::ALL.to_vec()
    } else {
        algorithms
            .iter()
            .map(|a| SigningAlgorithm::from_str(a).map_err(anyhow::Error::msg))
            .collect::<Result<_, _>>()?
    };
    let app = App::start(config).await?;
    let created = app.keys.rotate(&chosen, super::operator()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        println!("Published as next (each signs from the time shown, once promoted):");
        print_table(&created);
    }
    Ok(())
}
