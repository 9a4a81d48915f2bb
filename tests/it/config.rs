//! The configuration file shipped as documentation.

use std::collections::BTreeMap;
use std::path::Path;

use sesame::config::{CliOverrides, Config, all_keys};

fn example() -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn the_example_configuration_loads() {
    let (path, _) = example();
    let config = Config::load(Some(&path), &BTreeMap::new(), &CliOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // The example shows the defaults: loading it changes nothing.
    assert_eq!(config.to_masked_toml(), Config::defaults().to_masked_toml());
}

#[test]
fn the_example_documents_every_key() {
    let (_, text) = example();
    let mut section = String::new();
    let mut documented = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let entry = line.trim_start_matches('#').trim_start();
        if let Some((key, _)) = entry.split_once(" = ")
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            documented.push(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    for key in all_keys() {
        assert!(
            documented.contains(&key),
            "config.example.toml does not document {key}"
        );
    }
}
