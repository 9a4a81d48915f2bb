//! The `sesame` command line (clap): serving, the demo, and the operators' commands. Global
//! options `--config` and `--data-dir` apply to every command, so admin commands act on the same
//! database as the server. Admin commands take `--json` for scripts.

mod admin;
mod client;
mod demo;
mod import;
mod keys;
mod serve;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::audit::{Actor, AuditAction};
use crate::config::{CliOverrides, Config, ConfigError, LogFormat};

/// Sésame — single sign-on for universities (CAS and OpenID Connect).
#[derive(Debug, Parser)]
#[command(name = "sesame", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without one, every key has its default.
    #[arg(long, global = true, env = "SESAME_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database, mail outbox); overrides `data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format; overrides `log.format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Sésame.
    Serve(ServeArgs),
    /// Serve Sésame with sample data and a demo banner (SQLite, mails to files).
    Demo(ServeArgs),
    /// Apply pending database migrations, then exit.
    Migrate(JsonFlag),
    /// Validate the configuration and print it as Sésame sees it (secrets masked).
    CheckConfig(JsonFlag),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Helpdesk commands on accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// CAS services (relying parties) registered in the database.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// OpenID Connect clients (relying parties) registered in the database.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Import a registrar (students) or HR (staff) export. Exit code 3 when some lines were
    /// rejected (the others are imported).
    Import {
        /// Which feed the file is.
        #[arg(value_enum)]
        feed: import::Feed,
        /// The CSV file (UTF-8, header line, RFC 4180 quoting).
        file: PathBuf,
        /// Show what would change without writing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Public URL (the OIDC issuer; base of every absolute URL).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print a single-use activation code (valid 7 days) for a staff account; voids the previous.
    ActivationCode {
        /// The staff member's login (prenom.nom).
        login: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show an account: state, lock (why, until when), last login, factors, masked contacts,
    /// sessions.
    Show {
        /// Login, former login or full address.
        login: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Lift the password lock of an account (temporary or hard).
    Unlock {
        login: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Disable an account (a leaver, a compromise); its sessions end at once.
    Disable {
        login: String,
        /// Why (recorded in the audit trail and shown by `show`).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Enable a disabled account again.
    Enable {
        login: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// End every SSO session of an account.
    RevokeSessions {
        login: String,
        /// Why (recorded in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the OIDC clients an account allowed (consent page).
    Consents {
        login: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove every second factor of an account (TOTP, passkeys, recovery codes) when its owner
    /// lost them all; audited, and every contact is told.
    ResetMfa {
        login: String,
        /// Why (recorded in the audit trail): how the person's identity was checked.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Forget an account's consents (all, or one client's) and revoke the tokens they allowed.
    RevokeConsent {
        login: String,
        /// Only this client.
        #[arg(long)]
        client: Option<String>,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the live SSO sessions of an account.
    Sessions {
        login: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Read the audit trail, most recent first.
    Audit {
        /// Only the events of this account.
        #[arg(long)]
        login: Option<String>,
        /// Only events since this time: RFC 3339 (2026-09-01T08:00:00Z), a date (2026-09-01,
        /// UTC) or a duration ago (24h, 7days).
        #[arg(long)]
        since: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Lift the activation lock of a dossier number (after 5 failed attempts).
    UnlockActivation {
        /// The dossier number.
        dossier_number: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register a CAS service. Dangerous patterns are refused (an unescaped `.` in a regex host,
    /// a trailing `.*`, plain http outside `cas.allow_http_services`).
    Add {
        /// Short stable id (lower-case letters, digits, `-`, `_`).
        id: String,
        /// Name shown to people.
        #[arg(long)]
        name: String,
        /// The URL, URL prefix or regular expression.
        #[arg(long)]
        url: String,
        /// exact, prefix (host exact, path prefix on a segment boundary) or regex (anchored).
        #[arg(long = "match", default_value = "prefix")]
        mode: String,
        /// Evaluation order, lower first.
        #[arg(long, default_value_t = 0)]
        order: i32,
        /// Attributes released (repeat, or comma-separated).
        #[arg(long = "attribute", value_delimiter = ',')]
        attributes: Vec<String>,
        /// The attribute whose value is cas:user.
        #[arg(long, default_value = "uid")]
        user_attribute: String,
        /// Do not release attributes on CAS 2 serviceValidate (only on /p3/).
        #[arg(long)]
        no_cas2_attributes: bool,
        /// May obtain proxy tickets.
        #[arg(long)]
        proxy: bool,
        /// Logins to it need a second factor.
        #[arg(long)]
        mfa_required: bool,
        /// Send it single-logout requests (to --logout-url, or the service URL).
        #[arg(long)]
        single_logout: bool,
        #[arg(long)]
        logout_url: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the services (configuration file and database), in evaluation order.
    List(JsonFlag),
    /// Show one service.
    Show {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove a service registered with `service add`.
    Remove {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum ClientCommand {
    /// Register an OIDC client. A confidential client gets a secret, printed once.
    Add {
        /// The client_id (letters, digits, `-`, `_`, `.`).
        id: String,
        /// Name shown to people (consent page).
        #[arg(long)]
        name: String,
        /// A redirect URI (exact string; repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may return (repeat for several).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Receives back-channel logout tokens.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        /// A public client (no secret; PKCE required; implies --auth-method none).
        #[arg(long)]
        public: bool,
        /// client_secret_basic, client_secret_post or none.
        #[arg(long)]
        auth_method: Option<String>,
        /// A grant (authorization_code, refresh_token, client_credentials); repeat for several.
        /// Default: authorization_code and refresh_token.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// A scope it may ask (openid, profile, email, phone, supann); repeat. Default: all.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The university's own application: no consent page.
        #[arg(long)]
        first_party: bool,
        /// RS256, ES256 or EdDSA.
        #[arg(long, default_value = "RS256")]
        signing_alg: String,
        /// opaque or jwt.
        #[arg(long, default_value = "opaque")]
        access_token_format: String,
        /// Logins to it need a second factor.
        #[arg(long)]
        mfa_required: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the clients (configuration file and database).
    List(JsonFlag),
    /// Show one client.
    Show {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove a client registered with `client add` (its tokens and consents go with it).
    Remove {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Give a confidential client a new secret, printed once; the old one stops working.
    RotateSecret {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys and their states.
    List(JsonFlag),
    /// Publish a new `next` key (for every algorithm, or those given); it signs once promoted.
    Rotate {
        /// Algorithm to rotate (RS256, ES256, EdDSA); repeat for several. Default: all.
        #[arg(long = "algorithm", value_name = "ALG")]
        algorithms: Vec<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Exit code for configuration and usage problems.
const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let overrides = CliOverrides {
        data_dir: cli.data_dir.clone(),
        listen: match &cli.command {
            Command::Serve(args) | Command::Demo(args) => args.listen.clone(),
            _ => None,
        },
        public_url: match &cli.command {
            Command::Serve(args) | Command::Demo(args) => args.public_url.clone(),
            _ => None,
        },
    };
    let loaded = Config::load_from_process(cli.config.as_deref(), &overrides);
    if let Command::CheckConfig(flag) = &cli.command {
        return check_config(loaded, flag.json);
    }
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<anyhow::Result<()>, ExitCode> = runtime.block_on(async move {
        Ok(match cli.command {
            Command::Serve(_) => serve::run(config, false).await,
            Command::Demo(_) => serve::run(config, true).await,
            Command::Migrate(flag) => migrate(config, flag.json).await,
            Command::Keys(KeysCommand::List(flag)) => keys::list(config, flag.json).await,
            Command::Keys(KeysCommand::Rotate { algorithms, json }) => {
                keys::rotate(config, &algorithms, json.json).await
            }
            Command::Admin(AdminCommand::ActivationCode { login, json }) => {
                admin::activation_code(config, &login, json.json).await
            }
            Command::Service(command) => service::run(config, command).await,
            Command::Client(command) => client::run(config, command).await,
            Command::Admin(AdminCommand::Show { login, json }) => {
                admin::show(config, &login, json.json).await
            }
            Command::Admin(AdminCommand::Unlock {
                login,
                reason,
                json,
            }) => admin::unlock(config, &login, &reason, json.json).await,
            Command::Admin(AdminCommand::Disable {
                login,
                reason,
                json,
            }) => admin::disable(config, &login, &reason, json.json).await,
            Command::Admin(AdminCommand::Enable {
                login,
                reason,
                json,
            }) => admin::enable(config, &login, &reason, json.json).await,
            Command::Admin(AdminCommand::RevokeSessions {
                login,
                reason,
                json,
            }) => admin::revoke_sessions(config, &login, &reason, json.json).await,
            Command::Admin(AdminCommand::ResetMfa {
                login,
                reason,
                json,
            }) => admin::reset_mfa(config, &login, &reason, json.json).await,
            Command::Admin(AdminCommand::Consents { login, json }) => {
                admin::consents(config, &login, json.json).await
            }
            Command::Admin(AdminCommand::RevokeConsent {
                login,
                client,
                reason,
                json,
            }) => {
                admin::revoke_consent(config, &login, client.as_deref(), &reason, json.json).await
            }
            Command::Admin(AdminCommand::Sessions { login, json }) => {
                admin::sessions(config, &login, json.json).await
            }
            Command::Admin(AdminCommand::Audit {
                login,
                since,
                limit,
                json,
            }) => admin::audit(config, login.as_deref(), since.as_deref(), limit, json.json).await,
            Command::Admin(AdminCommand::UnlockActivation {
                dossier_number,
                reason,
                json,
            }) => admin::unlock_activation(config, &dossier_number, &reason, json.json).await,
            Command::Import {
                feed,
                file,
                dry_run,
                json,
            } => match import::run(config, feed, &file, dry_run, json.json).await {
                Ok(true) => Ok(()),
                Ok(false) => return Err(ExitCode::from(import::EXIT_SOME_REJECTED)),
                Err(e) => Err(e),
            },
            Command::CheckConfig(_) => unreachable!("handled before the runtime starts"),
        })
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format.unwrap_or(config.log.format) {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn check_config(loaded: Result<Config, ConfigError>, json: bool) -> ExitCode {
    match (loaded, json) {
        (Ok(config), false) => {
            println!("# The configuration is valid. Effective values (secrets masked):");
            print!("{}", config.to_masked_toml());
            ExitCode::SUCCESS
        }
        (Ok(config), true) => {
            let effective: toml::Value = config
                .to_masked_toml()
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .unwrap_or(toml::Value::Boolean(false));
            println!(
                "{}",
                serde_json::json!({"valid": true, "config": effective})
            );
            ExitCode::SUCCESS
        }
        (Err(error), false) => {
            eprint!("{error}");
            ExitCode::from(EXIT_CONFIG)
        }
        (Err(error), true) => {
            let problems: Vec<_> = error
                .problems
                .iter()
                .map(|p| serde_json::json!({"key": p.key, "message": p.message}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"valid": false, "problems": problems})
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn migrate(config: Config, json: bool) -> anyhow::Result<()> {
    let store = crate::app::open_store(&config).await?;
    let auditor = crate::audit::Auditor::new(
        store.clone(),
        std::sync::Arc::new(crate::clock::SystemClock),
    );
    auditor
        .record_from(
            operator(),
            AuditAction::SchemaMigrated,
            None,
            Some("cli".into()),
            serde_json::json!({"backend": store.backend()}),
        )
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"migrated": true, "backend": store.backend()})
        );
    } else {
        println!("The {} database is up to date.", store.backend());
    }
    Ok(())
}

/// The operator running the command, for the audit trail.
pub(crate) fn operator() -> Actor {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    Actor::Operator(name)
}
